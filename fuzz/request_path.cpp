#include "fuzz/request_path.hpp"
#include "fuzz/check.hpp"

#include "core/ids.hpp"
#include "http/cart_codec.hpp"
#include "http/customer_codec.hpp"
#include "http/json_codec.hpp"
#include "http/order_codec.hpp"
#include "http/route_table.hpp"
#include "http/search_codec.hpp"

#include <map>

namespace emporium::fuzz {

namespace {

void validate_etag(std::string_view value) {
  (void) http::codec::version_of_etag(value);
}

using body_check = void (*)(const http::request&);

/// What each handler decodes from headers and body, by operation id (routes without any have
/// no entry). The limits are config::orders_settings' defaults.
const std::map<std::string, body_check>& body_checks() {
  namespace codec = http::codec;
  static const config::orders_settings orders;
  static const std::map<std::string, body_check> checks{
    {"createProduct", [](const http::request& r) { (void) codec::decode_product_draft(r.body); }},
    {"getProduct", [](const http::request& r) { validate_etag(r.header("if-none-match")); }},
    {"updateProduct",
     [](const http::request& r) {
       validate_etag(r.header("if-match"));
       (void) codec::decode_product_patch(r.body);
     }},
    {"createCustomer", [](const http::request& r) { (void) codec::decode_customer_draft(r.body); }},
    {"login", [](const http::request& r) { (void) codec::decode_login(r.body); }},
    {"setCartItem",
     [](const http::request& r) {
       if (auto q = codec::decode_quantity(r.body, orders.max_units_per_line))
         expect(*q >= 0 && *q <= orders.max_units_per_line);
     }},
    {"checkoutCart",
     [](const http::request& r) {
       (void) codec::valid_idempotency_key(r.header("idempotency-key"));
       (void) codec::decode_checkout(r.body);
     }},
    {"createOrder",
     [](const http::request& r) {
       (void) codec::valid_idempotency_key(r.header("idempotency-key"));
       if (auto o = codec::decode_order_request(r.body, orders.max_lines,
                                                orders.max_units_per_line))
         expect(!o->items.empty() && static_cast<int>(o->items.size()) <= orders.max_lines);
     }},
    {"payOrder", [](const http::request& r) { (void) codec::decode_payment(r.body); }},
    {"searchProducts",
     [](const http::request& r) {
       static const std::string key = http::search_codec::cursor_key("fuzz-secret");
       (void) http::search_codec::decode_query(r.query, key);
     }},
  };
  return checks;
}

} // namespace

std::vector<std::pair<std::string, std::string>> api_routes() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& route : api_router().routes())
    out.emplace_back(route.method, route.pattern);
  return out;
}

const http::router& api_router() {
  static const http::router r = http::table_router([](const http::route_spec&) {
    return [](const http::request&, const http::path_params&, http::responder) {};
  });
  return r;
}

void route_and_validate(const http::request& req) {
  auto m = api_router().match(req.method, req.path);
  if (!m.matched)
    return; // 404, or 405 with the allowed methods: nothing more to validate
  const auto& spec = *m.matched->spec;
  // Every parameter of the pattern is bound, to a non-empty segment without '/'.
  for (const auto& [name, value] : m.params.values)
    expect(!value.empty() && value.find('/') == std::string::npos);
  // The table's checks, as the router runs them before every handler.
  bool ids_ok = !http::check_path_ids(spec, m.params);
  for (const auto& p : spec.path_ids)
    if (ids_ok)
      expect(core::is_valid_id(m.params[p.name], p.prefix));
  http::query_args q;
  if (!http::check_query(spec, req, q)) {
    expect(q.limit >= http::page_limit_min && q.limit <= http::page_limit_max);
    if (q.after_id)
      expect(core::is_valid_id(*q.after_id, spec.cursor_prefix)); // the right kind only
    if (q.category)
      expect(!q.category->empty() && q.category->size() <= http::category_max_chars);
    if (q.country)
      expect(q.country->size() == 2);
  }
  auto check = body_checks().find(spec.operation_id);
  if (check != body_checks().end())
    check->second(req);
}

} // namespace emporium::fuzz
