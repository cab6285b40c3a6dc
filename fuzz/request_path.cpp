#include "fuzz/request_path.hpp"

#include "http/commerce_codec.hpp"
#include "http/json_codec.hpp"
#include "http/search_codec.hpp"
#include "persistence/ids.hpp"

#include <cstdlib>

namespace emporium::fuzz {

namespace {

/// A check that must hold whatever the input: a violation is a bug, reported as a crash.
void expect(bool ok) {
  if (!ok)
    std::abort();
}

void validate_cursor(const http::request& req, std::string_view prefix) {
  if (auto* c = req.query_one("cursor"))
    if (auto id = http::codec::decode_cursor(*c, prefix))
      expect(persistence::is_valid_id(*id, prefix)); // only ids of the right kind come out
}

void validate_etag(std::string_view value) {
  (void)http::codec::version_of_etag(value);
}

} // namespace

const std::vector<std::pair<std::string, std::string>>& api_routes() {
  static const std::vector<std::pair<std::string, std::string>> routes{
    {"GET", "/healthz"},
    {"GET", "/readyz"},
    {"GET", "/products"},
    {"POST", "/products"},
    {"GET", "/products/{id}"},
    {"PATCH", "/products/{id}"},
    {"GET", "/metrics"},
    {"GET", "/openapi.json"},
    {"POST", "/customers"},
    {"GET", "/customers/{id}"},
    {"GET", "/customers/{id}/orders"},
    {"POST", "/sessions"},
    {"POST", "/carts"},
    {"GET", "/carts/{id}"},
    {"PUT", "/carts/{id}/items/{product_id}"},
    {"POST", "/carts/{id}/checkout"},
    {"POST", "/orders"},
    {"GET", "/orders/{id}"},
    {"POST", "/orders/{id}/payments"},
    {"POST", "/orders/{id}/cancel"},
    {"POST", "/orders/{id}/ship"},
    {"POST", "/orders/{id}/deliver"},
    {"GET", "/search"},
  };
  return routes;
}

const http::router& api_router() {
  static const http::router r = [] {
    http::router out;
    for (const auto& [method, pattern] : api_routes())
      out.add(method, pattern, [](const http::request&, const http::path_params&, http::responder) {});
    return out;
  }();
  return r;
}

void route_and_validate(const http::request& req) {
  auto m = api_router().match(req.method, req.path);
  if (!m.matched)
    return; // 404, or 405 with the allowed methods: nothing more to validate
  const auto& pattern = m.matched->pattern;
  const auto& method = m.matched->method;
  // Every parameter of the pattern is bound, to a non-empty segment without '/'.
  for (const auto& [name, value] : m.params.values)
    expect(!value.empty() && value.find('/') == std::string::npos);
  auto id = [&m](std::string_view name) -> const std::string& { return m.params[name]; };

  if (pattern == "/products") {
    validate_cursor(req, "prod");
    if (method == "POST")
      (void)http::codec::decode_product_draft(req.body);
  } else if (pattern == "/products/{id}") {
    (void)persistence::is_valid_id(id("id"), "prod");
    validate_etag(req.header("if-match"));
    validate_etag(req.header("if-none-match"));
    if (method == "PATCH")
      (void)http::codec::decode_product_patch(req.body);
  } else if (pattern == "/customers") {
    (void)http::codec::decode_customer_draft(req.body);
  } else if (pattern == "/customers/{id}") {
    (void)persistence::is_valid_id(id("id"), "cust");
  } else if (pattern == "/customers/{id}/orders") {
    (void)persistence::is_valid_id(id("id"), "cust");
    validate_cursor(req, "ord");
  } else if (pattern == "/sessions") {
    (void)http::codec::decode_login(req.body);
  } else if (pattern == "/carts/{id}") {
    (void)persistence::is_valid_id(id("id"), "cart");
  } else if (pattern == "/carts/{id}/items/{product_id}") {
    (void)persistence::is_valid_id(id("id"), "cart");
    (void)persistence::is_valid_id(id("product_id"), "prod");
    if (auto q = http::codec::decode_quantity(req.body, 100))
      expect(*q >= 0);
  } else if (pattern == "/carts/{id}/checkout") {
    (void)persistence::is_valid_id(id("id"), "cart");
    (void)http::codec::valid_idempotency_key(req.header("idempotency-key"));
    (void)http::codec::decode_checkout(req.body);
  } else if (pattern == "/orders") {
    (void)http::codec::valid_idempotency_key(req.header("idempotency-key"));
    if (auto o = http::codec::decode_order_request(req.body, 50, 100))
      expect(!o->items.empty() && o->items.size() <= 50);
  } else if (pattern.rfind("/orders/{id}", 0) == 0) {
    (void)persistence::is_valid_id(id("id"), "ord");
    if (pattern == "/orders/{id}/payments")
      (void)http::codec::decode_payment(req.body);
  } else if (pattern == "/search") {
    static const std::string key = http::search_codec::cursor_key("fuzz-secret");
    (void)http::search_codec::decode_query(req.query, key);
  }
}

} // namespace emporium::fuzz
