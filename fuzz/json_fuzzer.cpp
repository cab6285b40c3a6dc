// Fuzz target: every JSON body decoder of the API (http/json_codec.cpp and the customer, cart
// and order codecs).
// The first byte picks the decoder, the rest is the body. Decoders must reject anything
// malformed as invalid input with a detail (and a message for each field error), never
// throw or crash, and never let a value through that breaks the rules they document: lengths,
// ranges, character sets, the order limits.

#include "core/ids.hpp"
#include "fuzz/check.hpp"
#include "http/cart_codec.hpp"
#include "http/customer_codec.hpp"
#include "http/json_codec.hpp"
#include "http/order_codec.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace codec = emporium::http::codec;
namespace model = emporium::model;

namespace {

constexpr int max_lines = 50;
constexpr std::int64_t max_units = 100;

/// Characters (UTF-8 code points) of a decoded string: the JSON parser has checked the UTF-8.
std::size_t chars(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(
    s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

/// A text field as json_reader's text() lets it through: `min`..`max` characters, no control
/// characters (tab and line breaks only when `multiline`), not blank when it must be present.
void expect_text(const std::string& s, std::size_t min, std::size_t max, bool multiline = false) {
  expect(chars(s) >= min && chars(s) <= max);
  for (unsigned char c : s)
    expect((c >= 0x20 && c != 0x7f) || (multiline && (c == '\t' || c == '\n' || c == '\r')));
  if (min > 0)
    expect(s.find_first_not_of(" \t\r\n") != std::string::npos);
}

template <class T>
void expect_rejection_or(const emporium::result<T>& r) {
  if (r)
    return;
  const auto& f = r.error();
  expect(f.code == emporium::errc::invalid_input);
  expect(!f.detail.empty());
  // The field may be "" (a body with an empty key names that key); the message never is.
  for (const auto& e : f.errors)
    expect(!e.message.empty());
}

bool upper_letters(const std::string& s, std::size_t n) {
  return s.size() == n
         && std::all_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

bool sku_chars(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
           || c == '_' || c == '.';
  });
}

bool slug(const std::string& s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

void expect_images(const std::vector<std::string>& images) {
  expect(images.size() <= 20);
  for (const auto& url : images)
    expect(url.size() <= 2048 && (url.rfind("https://", 0) == 0 || url.rfind("http://", 0) == 0));
}

/// A product's fields, whichever of them are present (draft: all; patch: the engaged ones).
void expect_product_fields(const std::optional<std::string>& sku,
                           const std::optional<std::string>& name,
                           const std::optional<std::string>& description,
                           std::optional<std::int64_t> price,
                           const std::optional<std::string>& currency,
                           const std::optional<std::string>& category,
                           std::optional<std::int64_t> stock, std::optional<std::int64_t> weight) {
  if (sku) {
    expect_text(*sku, 1, 64);
    expect(sku_chars(*sku));
  }
  if (name)
    expect_text(*name, 1, 200);
  if (description)
    expect_text(*description, 0, 10'000, true);
  if (price)
    expect(*price >= 0 && *price <= 10'000'000'000LL);
  if (currency)
    expect(upper_letters(*currency, 3));
  if (category)
    expect(slug(*category));
  if (stock)
    expect(*stock >= 0 && *stock <= 1'000'000'000);
  if (weight)
    expect(*weight >= 0 && *weight <= 1'000'000'000);
}

void expect_address(const model::address& a) {
  expect_text(a.name, 1, 200);
  expect_text(a.line1, 1, 200);
  expect_text(a.line2, 0, 200);
  expect_text(a.city, 1, 100);
  expect_text(a.region, 0, 100);
  expect_text(a.postal_code, 1, 20);
  expect(upper_letters(a.country, 2));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0: {
      auto d = codec::decode_product_draft(body);
      expect_rejection_or(d);
      if (d) {
        expect_product_fields(d->sku, d->name, d->description, d->price_cents, d->currency,
                              d->category, d->stock, d->weight_grams);
        expect_images(d->images);
      }
      break;
    }
    case 1: {
      auto p = codec::decode_product_patch(body);
      expect_rejection_or(p);
      if (p) {
        expect(!p->empty());
        expect_product_fields(p->sku, p->name, p->description, p->price_cents, p->currency,
                              p->category, p->stock, p->weight_grams);
        if (p->images)
          expect_images(*p->images);
      }
      break;
    }
    case 2: {
      auto c = codec::decode_customer_draft(body);
      expect_rejection_or(c);
      if (c) {
        expect_text(c->email, 3, 254);
        expect(c->email.find('@') != std::string::npos);
        expect_text(c->name, 1, 200);
        expect(chars(c->password) >= 8 && chars(c->password) <= 128);
      }
      break;
    }
    case 3: {
      auto l = codec::decode_login(body);
      expect_rejection_or(l);
      if (l)
        expect_text(l->email, 1, 254);
      break;
    }
    case 4: {
      auto o = codec::decode_order_request(body, max_lines, max_units);
      expect_rejection_or(o);
      if (o) {
        expect(!o->items.empty() && o->items.size() <= static_cast<std::size_t>(max_lines));
        // A product listed twice counts once, its quantities added.
        std::map<std::string, std::int64_t> units;
        for (const auto& l : o->items) {
          expect(emporium::core::is_valid_id(l.product_id, "prod"));
          expect(l.quantity >= 1 && l.quantity <= max_units);
          units[l.product_id] += l.quantity;
        }
        for (const auto& [id, n] : units)
          expect(n <= max_units);
        expect_address(o->shipping_address);
        expect(!o->request_hash.empty());
      }
      break;
    }
    case 5: {
      auto o = codec::decode_checkout(body);
      expect_rejection_or(o);
      if (o) {
        expect(o->items.empty());
        expect_address(o->shipping_address);
        expect(!o->request_hash.empty());
      }
      break;
    }
    case 6: {
      auto q = codec::decode_quantity(body, max_units);
      expect_rejection_or(q);
      if (q)
        expect(*q >= 0 && *q <= max_units);
      break;
    }
    case 7: {
      auto m = codec::decode_payment(body);
      expect_rejection_or(m);
      if (m) {
        expect(m->size() >= 5 && m->size() <= 128 && m->rfind("tok_", 0) == 0);
        expect(std::all_of(m->begin(), m->end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                 || c == '_';
        }));
      }
      break;
    }
  }
  return 0;
}
