#include "http/commerce_codec.hpp"

#include "actors/commerce_logic.hpp"
#include "http/json_codec.hpp"
#include "http/json_reader.hpp"
#include "persistence/ids.hpp"
#include "persistence/pg.hpp"

#include <algorithm>

namespace emporium::http::codec {

namespace {

bool plausible_email(const std::string& e) {
  auto at = e.find('@');
  if (at == std::string::npos || at == 0 || at != e.rfind('@') || e.size() > 254)
    return false;
  auto domain = e.substr(at + 1);
  auto dot = domain.find('.');
  if (domain.empty() || dot == std::string::npos || dot == 0 || domain.back() == '.')
    return false;
  return std::none_of(e.begin(), e.end(), [](unsigned char c) { return c <= ' ' || c == 0x7f; });
}

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
  return persistence::sha256_hex(body.dump());
}

std::string ts(std::int64_t ms) {
  return persistence::format_rfc3339(ms);
}

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

json address_json(const model::address& a) {
  json j{{"name", a.name}, {"line1", a.line1}, {"city", a.city}, {"postal_code", a.postal_code},
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
              {"created_at", ts(o.created_at_ms)},
              {"updated_at", ts(o.updated_at_ms)}};
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

result<model::customer_draft> decode_customer_draft(const std::string& body) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"email", "name", "password"});
  model::customer_draft d;
  if (auto v = r.text("email", 3, 254, true)) {
    if (!plausible_email(*v))
      r.fail("email", "is not an email address");
    else
      d.email = *v;
  }
  if (auto v = r.text("name", 1, 200, true))
    d.name = *v;
  // Blank-only passwords are weak but valid: only the length is ruled here.
  auto* pw = r.find("password");
  if (!pw)
    r.fail("password", "is required");
  else if (!pw->is_string())
    r.fail("password", "must be a string");
  else {
    auto s = pw->get<std::string>();
    auto n = reader::utf8_length(s);
    if (n < 8 || n > 128)
      r.fail("password", "must be 8 to 128 characters long");
    else
      d.password = std::move(s);
  }
  if (!r.errors().empty())
    return failure{errc::invalid_input, "the customer is invalid", std::move(r.errors())};
  return d;
}

result<login_request> decode_login(const std::string& body) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"email", "password"});
  login_request out;
  if (auto v = r.text("email", 1, 254, true))
    out.email = *v;
  auto* pw = r.find("password");
  if (!pw || !pw->is_string() || pw->get<std::string>().empty() || pw->get<std::string>().size() > 1024)
    r.fail("password", "is required (a string)");
  else
    out.password = pw->get<std::string>();
  if (!r.errors().empty())
    return failure{errc::invalid_input, "email and password are required", std::move(r.errors())};
  return out;
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
        if (!persistence::is_valid_id(*v, "prod"))
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
  // A product listed twice counts once, with the quantities added.
  std::int64_t total = 0;
  for (const auto& l : actors::commerce::normalise_lines(req.items))
    total = std::max(total, l.quantity);
  if (total > max_units)
    return failure{errc::invalid_input, "the order is invalid",
                   {{"items", "at most " + std::to_string(max_units)
                                + " of one product per order"}}};
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

result<std::int64_t> decode_quantity(const std::string& body, std::int64_t max_units) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"quantity"});
  auto q = r.integer("quantity", 0, max_units, true);
  if (!r.errors().empty() || !q)
    return failure{errc::invalid_input, "the quantity is invalid", std::move(r.errors())};
  return *q;
}

result<std::string> decode_payment(const std::string& body) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"payment_method"});
  auto m = r.text("payment_method", 5, 128, true);
  if (m && (m->rfind("tok_", 0) != 0
            || !std::all_of(m->begin(), m->end(), [](char c) {
                 return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                        || c == '_';
               })))
    r.fail("payment_method", "must be a payment token such as tok_visa");
  if (!r.errors().empty() || !m)
    return failure{errc::invalid_input, "the payment is invalid", std::move(r.errors())};
  return *m;
}

bool valid_idempotency_key(std::string_view key) {
  return !key.empty() && key.size() <= 255
         && std::all_of(key.begin(), key.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

std::string encode(const model::customer& c, const config::loyalty_settings& tiers) {
  return dump(json{{"id", c.id},
                   {"email", c.email},
                   {"name", c.name},
                   {"loyalty",
                    {{"points", c.loyalty_points},
                     {"tier", actors::commerce::loyalty_tier(c.loyalty_points, tiers)}}},
                   {"created_at", ts(c.created_at_ms)}});
}

std::string encode(const model::session_grant& g) {
  return dump(json{{"token", g.token},
                   {"customer_id", g.customer_id},
                   {"expires_at", ts(g.expires_at_ms)}});
}

std::string encode(const model::cart_view& v) {
  const bool quoted = v.shipping_problem.empty();
  json out{{"id", v.basket.id},
           {"customer_id", v.basket.customer_id},
           {"items", lines_json(v.lines)},
           {"currency", v.currency},
           {"subtotal_cents", v.subtotal_cents},
           {"shipping_cents", quoted ? json(v.shipping_cents) : json()},
           {"total_cents", quoted ? json(v.total_cents) : json()},
           {"order_id", v.basket.order_id ? json(*v.basket.order_id) : json()},
           {"updated_at", ts(v.basket.updated_at_ms)},
           {"expires_at", ts(v.basket.expires_at_ms)}};
  if (!quoted)
    out["shipping_problem"] = v.shipping_problem;
  return dump(out);
}

std::string encode(const model::order& o) {
  return dump(order_json(o));
}

std::string encode(const model::order_page& page) {
  json items = json::array();
  for (const auto& o : page.items)
    items.push_back(order_json(o));
  return dump(json{{"items", std::move(items)},
                   {"next_cursor",
                    page.next_after_id ? json(encode_cursor(*page.next_after_id)) : json()}});
}

} // namespace emporium::http::codec
