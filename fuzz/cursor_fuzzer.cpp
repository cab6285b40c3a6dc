// Fuzz target: the opaque cursors clients send back. Listing cursors (codec::decode_cursor)
// must only ever yield a well-formed id of the asked kind, and encode → decode must give the id
// back; search cursors (search_codec::decode_cursor) must reject anything not signed for the
// query they page. The first byte picks what the rest is.

#include "core/ids.hpp"
#include "http/json_codec.hpp"
#include "http/search_codec.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

namespace codec = emporium::http::codec;
namespace search_codec = emporium::http::search_codec;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  static const char* prefixes[] = {"prod", "ord", "cust", "cart"};
  std::string prefix = prefixes[data[0] % 4];
  switch ((data[0] / 4) % 3) {
    case 0:
      // A cursor as a client sends it.
      if (auto id = codec::decode_cursor(rest, prefix))
        if (!emporium::core::is_valid_id(*id, prefix))
          std::abort();
      break;
    case 1:
      // The round trip of an id the server might page after.
      if (emporium::core::is_valid_id(rest, prefix)) {
        auto back = codec::decode_cursor(codec::encode_cursor(rest), prefix);
        if (!back || *back != rest)
          std::abort();
      }
      break;
    case 2: {
      // A search cursor for a fixed query, signed with another key or forged.
      static const std::string key = search_codec::cursor_key("fuzz-secret");
      static const auto query = search_codec::decode_query(
        {{"q", "red shoes"}, {"sort", "price_asc"}}, key);
      if (!query)
        std::abort();
      (void) search_codec::decode_cursor(rest, query.value(), key);
      break;
    }
  }
  return 0;
}
