#include "http/json_codec.hpp"

#include "http/json_reader.hpp"

#include "core/ids.hpp"
#include "persistence/pg.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <charconv>
#include <functional>
#include <set>

namespace emporium::http::codec {

namespace {

using json = nlohmann::json;

constexpr std::int64_t max_price_cents = 10'000'000'000LL; // 100 million in major units
constexpr std::int64_t max_stock = 1'000'000'000;
constexpr std::int64_t max_weight = 1'000'000'000;

bool is_slug(const std::string& s) {
  if (s.empty() || s.size() > 64)
    return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  return true;
}

bool is_sku(const std::string& s) {
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
          || c == '_' || c == '.'))
      return false;
  return true;
}

bool is_currency(const std::string& s) {
  return s.size() == 3
         && std::all_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

std::optional<std::vector<std::string>> images(reader& r) {
  auto* v = r.find("images");
  if (!v)
    return std::nullopt;
  if (!v->is_array() || v->size() > 20) {
    r.fail("images", "must be an array of at most 20 URLs");
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < v->size(); ++i) {
    const auto& x = (*v)[i];
    auto field = "images[" + std::to_string(i) + "]";
    if (!x.is_string()) {
      r.fail(field, "must be a string");
      continue;
    }
    auto s = x.get<std::string>();
    if (s.size() > 2048 || !(s.rfind("https://", 0) == 0 || s.rfind("http://", 0) == 0)
        || has_control_chars(s)) {
      r.fail(field, "must be an http(s) URL of at most 2048 characters");
      continue;
    }
    out.push_back(std::move(s));
  }
  return out;
}

/// Reads the product fields shared by create and patch; `required` on create.
template <class Out>
void read_product_fields(reader& r, Out& out, bool create) {
  if (auto v = r.text("sku", 1, 64, create)) {
    if (!is_sku(*v))
      r.fail("sku", "may contain only letters, digits, '-', '_' and '.'");
    else
      out.sku = *v;
  }
  if (auto v = r.text("name", 1, 200, create))
    out.name = *v;
  if (auto v = r.text("description", 0, 10'000, false, true))
    out.description = *v;
  if (auto v = r.integer("price_cents", 0, max_price_cents, create))
    out.price_cents = *v;
  if (auto* c = r.find("currency"); c || create) {
    if (auto v = r.text("currency", 3, 3, create)) {
      if (!is_currency(*v))
        r.fail("currency", "must be three upper-case letters (ISO 4217)");
      else
        out.currency = *v;
    }
  }
  if (auto v = r.text("category", 1, 64, false)) {
    if (!is_slug(*v))
      r.fail("category", "must be lower-case letters, digits, '-' or '_'");
    else
      out.category = *v;
  }
  if (auto v = r.integer("stock", 0, max_stock, create))
    out.stock = *v;
  if (auto v = r.integer("weight_grams", 0, max_weight, false))
    out.weight_grams = *v;
  if (auto v = images(r))
    out.images = *v;
}

} // namespace

json to_json(const model::product& p) {
  return json{{"id", p.id},
              {"sku", p.sku},
              {"name", p.name},
              {"description", p.description},
              {"price_cents", p.price_cents},
              {"currency", p.currency},
              {"category", p.category},
              {"stock", p.stock},
              {"weight_grams", p.weight_grams},
              {"images", p.images},
              {"created_at", persistence::format_rfc3339(p.created_at_ms)},
              {"updated_at", persistence::format_rfc3339(p.updated_at_ms)}};
}

std::string encode(const model::product& p) {
  return to_json(p).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode(const model::product_page& page) {
  json items = json::array();
  for (const auto& p : page.items)
    items.push_back(to_json(p));
  json j{{"items", std::move(items)},
         {"next_cursor", page.next_after_id ? json(encode_cursor(*page.next_after_id)) : json()}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

result<model::product_draft> decode_product_draft(const std::string& body) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"sku", "name", "description", "price_cents", "currency", "category", "stock",
                    "weight_grams", "images"});
  model::product_draft d;
  read_product_fields(r, d, true);
  if (!r.errors().empty())
    return failure{errc::invalid_input, "the product is invalid", std::move(r.errors())};
  return d;
}

result<model::product_patch> decode_product_patch(const std::string& body) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"sku", "name", "description", "price_cents", "currency", "category", "stock",
                    "weight_grams", "images"});
  model::product_patch p;
  read_product_fields(r, p, false);
  if (!r.errors().empty())
    return failure{errc::invalid_input, "the change is invalid", std::move(r.errors())};
  if (p.empty())
    return failure{errc::invalid_input, "the change names no field to change", {}};
  return p;
}

namespace {

constexpr std::string_view cursor_tag = "c1:";

} // namespace

std::string encode_cursor(const std::string& after_id) {
  return core::base64url_encode(std::string{cursor_tag} + after_id);
}

std::optional<std::string> decode_cursor(const std::string& cursor, std::string_view id_prefix) {
  if (cursor.empty() || cursor.size() > 256)
    return std::nullopt;
  auto raw = core::base64url_decode(cursor);
  if (!raw || raw->compare(0, cursor_tag.size(), cursor_tag) != 0)
    return std::nullopt;
  auto id = raw->substr(cursor_tag.size());
  if (!core::is_valid_id(id, id_prefix))
    return std::nullopt;
  return id;
}

std::string etag(std::int64_t version) {
  return "\"v" + std::to_string(version) + "\"";
}

std::optional<std::int64_t> version_of_etag(std::string_view tag) {
  if (tag.rfind("W/", 0) == 0)
    tag.remove_prefix(2);
  if (tag.size() < 4 || tag.front() != '"' || tag.back() != '"' || tag[1] != 'v')
    return std::nullopt;
  std::int64_t v = 0;
  auto digits = tag.substr(2, tag.size() - 3);
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc{} || ptr != digits.data() + digits.size() || v <= 0)
    return std::nullopt;
  return v;
}

} // namespace emporium::http::codec
