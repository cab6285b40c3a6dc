#include "http/order_codec.hpp"

#include "actors/order_logic.hpp"
#include "core/ids.hpp"
#include "http/json_codec.hpp"
#include "http/json_reader.hpp"
#include "persistence/pg.hpp"

#include <algorithm>

namespace emporium::http::codec {

namespace {

std::optional<model::address> read_address(reader& outer, const json& body) {
  auto it = body.find("shipping_address");
  if (it == body.end()) {
    outer.fail("shipping_address", "is required");
    return std::nullopt;
  }
  if (!it->is_object()) {
    outer.fail("shipping_address", "must be an object");
    return std::nullopt;
  }
  reader r{*it, "shipping_address."};
  r.reject_unknown({"name", "line1", "line2", "city", "region", "postal_code", "country"});
  model::address a;
  if (auto v = r.text("name", 1, 200, true))
    a.name = *v;
  if (auto v = r.text("line1", 1, 200, true))
    a.line1 = *v;
  if (auto v = r.text("line2", 0, 200, false))
    a.line2 = *v;
  if (auto v = r.text("city", 1, 100, true))
    a.city = *v;
  if (auto v = r.text("region", 0, 100, false))
    a.region = *v;
  if (auto v = r.text("postal_code", 1, 20, true))
    a.postal_code = *v;
  if (auto v = r.text("country", 2, 2, true)) {
    if (!std::all_of(v->begin(), v->end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
      r.fail("country", "must be an ISO 3166-1 alpha-2 code in upper case");
    else
      a.country = *v;
  }
  bool ok = r.errors().empty();
  outer.absorb(std::move(r.errors()));
  if (!ok)
    return std::nullopt;
  return a;
}

std::string canonical_hash(const json& body) {
  // nlohmann's objects are ordered maps: dump() is canonical, so "the same JSON value" hashes
  // the same whatever the key order or spacing of the request.
  return core::sha256_hex(body.dump());
}

json address_json(const model::address& a) {
  json j{{"name", a.name},
         {"line1", a.line1},
         {"city", a.city},
         {"postal_code", a.postal_code},
         {"country", a.country}};
  if (!a.line2.empty())
    j["line2"] = a.line2;
  if (!a.region.empty())
    j["region"] = a.region;
  return j;
}

json order_json(const model::order& o) {
  json payment = nullptr;
  if (o.payment)
    payment = {{"status", o.payment->status},
               {"provider", o.payment->provider},
               {"reference", o.payment->reference}};
  return json{{"id", o.id},
              {"customer_id", o.customer_id},
              {"status", model::order_status::shown(o.status)},
              {"items", lines_json(o.lines)},
              {"currency", o.currency},
              {"subtotal_cents", o.subtotal_cents},
              {"shipping_cents", o.shipping_cents},
              {"total_cents", o.total_cents},
              {"shipping_address", address_json(o.shipping_address)},
              {"payment", payment},
              {"created_at", persistence::format_rfc3339(o.created_at_ms)},
              {"updated_at", persistence::format_rfc3339(o.updated_at_ms)}};
}

} // namespace

json lines_json(const std::vector<model::order_line>& lines) {
  json out = json::array();
  for (const auto& l : lines)
    out.push_back({{"product_id", l.product_id},
                   {"name", l.name},
                   {"unit_price_cents", l.unit_price_cents},
                   {"quantity", l.quantity},
                   {"line_total_cents", l.unit_price_cents * l.quantity}});
  return out;
}

std::optional<failure> order_limits_problem(const std::vector<model::line_request>& items,
                                            std::int64_t max_units) {
  std::int64_t most = 0;
  for (const auto& l : actors::order_logic::normalise_lines(items))
    most = std::max(most, l.quantity);
  if (most > max_units)
    return failure{
      errc::invalid_input,
      "the order is invalid",
      {{"items", "at most " + std::to_string(max_units) + " of one product per order"}}};
  return std::nullopt;
}

result<model::order_request> decode_order_request(const std::string& body, int max_lines,
                                                  std::int64_t max_units) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"items", "shipping_address"});
  model::order_request req;
  auto items = j->find("items");
  if (items == j->end())
    r.fail("items", "is required");
  else if (!items->is_array() || items->empty()
           || items->size() > static_cast<std::size_t>(max_lines))
    r.fail("items", "must be an array of 1 to " + std::to_string(max_lines) + " lines");
  else {
    for (std::size_t i = 0; i < items->size(); ++i) {
      const auto& it = (*items)[i];
      auto prefix = "items[" + std::to_string(i) + "].";
      if (!it.is_object()) {
        r.fail("items[" + std::to_string(i) + "]", "must be an object");
        continue;
      }
      reader line{it, prefix};
      line.reject_unknown({"product_id", "quantity"});
      model::line_request l;
      if (auto v = line.text("product_id", 1, 64, true)) {
        if (!core::is_valid_id(*v, "prod"))
          line.fail("product_id", "is not a product id");
        else
          l.product_id = *v;
      }
      if (auto v = line.integer("quantity", 1, max_units, true))
        l.quantity = *v;
      if (line.errors().empty())
        req.items.push_back(std::move(l));
      r.absorb(std::move(line.errors()));
    }
  }
  if (auto a = read_address(r, *j))
    req.shipping_address = std::move(*a);
  if (!r.errors().empty())
    return failure{errc::invalid_input, "the order is invalid", std::move(r.errors())};
  if (auto too_many = order_limits_problem(req.items, max_units))
    return *too_many;
  req.request_hash = canonical_hash(*j);
  return req;
}

result<model::order_request> decode_checkout(const std::string& body) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"shipping_address"});
  model::order_request req;
  if (auto a = read_address(r, *j))
    req.shipping_address = std::move(*a);
  if (!r.errors().empty())
    return failure{errc::invalid_input, "the checkout is invalid", std::move(r.errors())};
  req.request_hash = canonical_hash(*j);
  return req;
}

result<std::string> decode_payment(const std::string& body) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"payment_method"});
  auto m = r.text("payment_method", 5, 128, true);
  if (m && (m->rfind("tok_", 0) != 0 || !std::all_of(m->begin(), m->end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                     || c == '_';
            })))
    r.fail("payment_method", "must be a payment token such as tok_visa");
  if (!r.errors().empty() || !m)
    return failure{errc::invalid_input, "the payment is invalid", std::move(r.errors())};
  return *m;
}

bool valid_idempotency_key(std::string_view key) {
  return !key.empty() && key.size() <= idempotency_key_max_chars
         && std::all_of(key.begin(), key.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

std::string encode(const model::order& o) {
  return dump_json(order_json(o));
}

std::string encode(const model::order_page& page) {
  json items = json::array();
  for (const auto& o : page.items)
    items.push_back(order_json(o));
  return dump_json(
    json{{"items", std::move(items)},
         {"next_cursor", page.next_after_id ? json(encode_cursor(*page.next_after_id)) : json()}});
}

} // namespace emporium::http::codec
