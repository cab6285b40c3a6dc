// Fuzz target: every JSON body decoder of the API (http/json_codec.cpp and the customer, cart
// and order codecs).
// The first byte picks the decoder, the rest is the body. Decoders must reject anything
// malformed with field errors, never throw, crash or let an out-of-range value through.

#include "http/cart_codec.hpp"
#include "http/customer_codec.hpp"
#include "http/json_codec.hpp"
#include "http/order_codec.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

namespace codec = emporium::http::codec;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0:
      if (auto d = codec::decode_product_draft(body))
        if (d->price_cents < 0 || d->stock < 0 || d->name.empty())
          std::abort();
      break;
    case 1: (void) codec::decode_product_patch(body); break;
    case 2: (void) codec::decode_customer_draft(body); break;
    case 3: (void) codec::decode_login(body); break;
    case 4:
      if (auto o = codec::decode_order_request(body, 50, 100)) {
        if (o->items.empty() || o->items.size() > 50)
          std::abort();
        for (const auto& l : o->items)
          if (l.quantity <= 0)
            std::abort();
      }
      break;
    case 5: (void) codec::decode_checkout(body); break;
    case 6:
      if (auto q = codec::decode_quantity(body, 100))
        if (*q < 0 || *q > 1000)
          std::abort();
      break;
    case 7: (void) codec::decode_payment(body); break;
  }
  return 0;
}
