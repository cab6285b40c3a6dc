// The route table's own checks, as the router runs them before every handler: path ids, query
// parameters, route classes; and the caller the gateway resolves once per request.

#include "http/route_table.hpp"
#include "core/ids.hpp"
#include "http/gateway.hpp"
#include "http/json_codec.hpp"

#include <catch2/catch.hpp>

#include <set>

using namespace emporium::http;

namespace {

const route_spec& spec(const char* method, const char* pattern) {
  const auto* s = find_route(method, pattern);
  REQUIRE(s != nullptr);
  return *s;
}

request with_query(std::vector<std::pair<std::string, std::string>> query) {
  request r;
  r.method = "GET";
  r.query = std::move(query);
  return r;
}

} // namespace

TEST_CASE("route table: each method and pattern once, each operation id once", "[route_table]") {
  std::set<std::pair<std::string, std::string>> routes;
  std::set<std::string> ids;
  for (const auto& r : route_table()) {
    INFO(r.method << " " << r.pattern);
    CHECK(routes.insert({r.method, r.pattern}).second);
    CHECK(ids.insert(r.operation_id).second);
    CHECK_FALSE(r.success.empty());
  }
}

TEST_CASE("route table: the query of a page is validated by the table", "[route_table]") {
  const auto& products = spec("GET", "/products");
  query_args q;
  CHECK_FALSE(check_query(products, with_query({}), q));
  CHECK(q.limit == page_limit_default);

  auto cursor = codec::encode_cursor(emporium::core::new_id("prod"));
  q = {};
  CHECK_FALSE(check_query(
    products, with_query({{"limit", "100"}, {"cursor", cursor}, {"category", "lamps"}}), q));
  CHECK(q.limit == 100);
  REQUIRE(q.after_id);
  CHECK(q.category == std::optional<std::string>{"lamps"});

  for (const auto& bad : std::vector<std::pair<std::string, std::string>>{
         {"limit", "0"},
         {"limit", "101"},
         {"limit", "1x"},
         {"cursor", "garbage"},
         {"category", ""},
         {"category", std::string(category_max_chars + 1, 'a')},
         {"category", "a\x01"},
         {"bogus", "1"}}) {
    INFO(bad.first << "=" << bad.second);
    query_args out;
    auto res = check_query(products, with_query({bad}), out);
    REQUIRE(res);
    CHECK(res->status == 400);
    CHECK(res->body.find("\"" + bad.first + "\"") != std::string::npos);
  }
  // A cursor of another kind of id does not page orders.
  query_args orders;
  CHECK(
    check_query(spec("GET", "/customers/{id}/orders"), with_query({{"cursor", cursor}}), orders));
  // Cart routes know only ?country and ignore the rest.
  query_args cart;
  CHECK_FALSE(
    check_query(spec("GET", "/carts/{id}"), with_query({{"country", "DE"}, {"x", "1"}}), cart));
  CHECK(cart.country == std::optional<std::string>{"DE"});
  CHECK(check_query(spec("GET", "/carts/{id}"), with_query({{"country", "de"}}), cart));
}

TEST_CASE("route table: a malformed path id answers 404 before any handler", "[route_table]") {
  const auto& item = spec("PUT", "/carts/{id}/items/{product_id}");
  path_params p;
  p.values = {{"id", emporium::core::new_id("cart")},
              {"product_id", emporium::core::new_id("prod")}};
  CHECK_FALSE(check_path_ids(item, p));
  p.values[1].second = emporium::core::new_id("cart");
  auto res = check_path_ids(item, p);
  REQUIRE(res);
  CHECK(res->status == 404);
  CHECK(res->body.find("no product has this id") != std::string::npos);
}

TEST_CASE("route table: classes and probes come from the table", "[route_table]") {
  CHECK(class_of(&spec("POST", "/sessions"), "POST") == route_class::login);
  CHECK(class_of(&spec("POST", "/customers"), "POST") == route_class::signup);
  CHECK(class_of(&spec("POST", "/orders"), "POST") == route_class::write);
  CHECK(class_of(nullptr, "GET") == route_class::read);
  std::set<std::string> probes;
  for (const auto& r : route_table())
    if (r.probe)
      probes.insert(r.pattern);
  CHECK(probes == std::set<std::string>{"/healthz", "/readyz", "/metrics"});
}

TEST_CASE("gateway: the caller is resolved once, before the handler", "[route_table][gateway]") {
  const auto admin_hash = emporium::core::sha256_hex("the-admin-key");
  const auto key = gateway::token_key(admin_hash);
  auto admitted = [&](const char* method, const char* target, std::string auth) {
    request r;
    r.method = method;
    r.target = target;
    if (!auth.empty())
      r.headers.emplace("authorization", std::move(auth));
    auto in = gateway::admit(r, "192.0.2.7", {}, key, admin_hash);
    return std::make_pair(in, r);
  };
  using k = caller::kind;
  CHECK(admitted("GET", "/orders/x", "").second.who.k == k::anonymous);
  CHECK(admitted("GET", "/orders/x", "Basic dXNlcjpwYXNz").second.who.k == k::malformed);
  CHECK(admitted("GET", "/orders/x", "Bearer made-up").second.who.k == k::unknown);
  auto admin = admitted("POST", "/orders?x=1", "Bearer the-admin-key");
  CHECK(admin.second.who.k == k::admin);
  CHECK(admin.first.cls == route_class::write);
  CHECK(admin.second.path == "/orders");
  // A signed token is handed over for the one verification; until then nobody.
  auto token = gateway::sign_token("secret", key);
  auto signed_in = admitted("GET", "/orders/x", "Bearer " + token);
  CHECK(signed_in.second.who.k == k::unknown);
  CHECK(signed_in.first.identity.session_token == "secret");
  auto verified = gateway::customer_identity("cust_1");
  CHECK(verified.who.k == k::customer);
  CHECK(verified.who.customer_id == "cust_1");
  // Probes are neither identified nor limited.
  auto probe = admitted("GET", "/healthz", "Bearer " + token);
  CHECK(probe.first.probe);
  CHECK(probe.first.identity.session_token.empty());
}
