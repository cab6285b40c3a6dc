// End-to-end: customers, sessions and who may see what: sign-up and login, the authorization matrix
// over every resource, loyalty points. Through the real `emporium serve` binary against the test
// PostgreSQL and Redis; the commerce tests share one server (shop::commerce_server()). The database
// is shared: every product, customer and key here is new and unique, nothing assumes empty tables.
// Catch2 assertions are not thread-safe: worker threads only record what they saw; the checks run
// on the test's thread afterwards.

#include "core/ids.hpp"
#include "e2e/commerce_support.hpp"
#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using namespace emporium::test::shop;
using namespace std::chrono_literals;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

} // namespace

TEST_CASE(
  "commerce: sessions and customers: one 401 for every failed login, emails unique in "
  "any case, orders listed newest first by cursor",
  "[e2e][commerce][sessions]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto buyer = new_shopper(c);

  // Wrong password and unknown email: the same answer, byte for byte (same request id).
  auto rid = with({}, "X-Request-Id", "commerce-login-check");
  auto wrong = c.request("POST", "/sessions",
                         json{{"email", buyer.email}, {"password", "not-the-password"}}.dump(),
                         rid);
  auto unknown = c.request(
    "POST", "/sessions",
    json{{"email", unique("nobody") + "@example.com"}, {"password", buyer.password}}.dump(), rid);
  check_problem(wrong, 401);
  check_problem(unknown, 401);
  CHECK(wrong.body == unknown.body);
  // The email is matched in any case.
  std::string upper = buyer.email;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  auto login = c.request("POST", "/sessions",
                         json{{"email", upper}, {"password", buyer.password}}.dump());
  INFO(show(login));
  REQUIRE(login.status == 200);
  CHECK(login.json().at("customer_id") == buyer.id);

  // A duplicate email in another case is 409.
  auto dup = c.request(
    "POST", "/customers",
    json{{"email", upper}, {"name", "Twin"}, {"password", "password-123"}}.dump());
  check_problem(dup, 409);

  // The customer reads itself, without its password.
  auto me = get_customer(c, buyer);
  CHECK(me.at("email") == buyer.email);
  CHECK_FALSE(me.contains("password"));
  CHECK_FALSE(me.contains("password_hash"));

  // Orders: newest first, cursor-paged, each once.
  auto product = create_product(c, {20, 300, 100});
  std::vector<std::string> placed;
  for (int i = 0; i < 5; ++i) {
    auto r = c.request("POST", "/orders", order_body({{product, 1}}).dump(), buyer.auth());
    REQUIRE(r.status == 201);
    placed.push_back(r.json().at("id").get<std::string>());
  }
  std::vector<std::string> listed;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto r = c.get(
      "/customers/" + buyer.id + "/orders?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor),
      buyer.auth());
    INFO(show(r));
    REQUIRE(r.status == 200);
    auto j = r.json();
    CHECK(j.at("items").size() <= 2);
    for (const auto& o : j.at("items")) {
      listed.push_back(o.at("id").get<std::string>());
      CHECK(o.at("customer_id") == buyer.id);
    }
    if (j.at("next_cursor").is_null())
      break;
    cursor = j["next_cursor"].get<std::string>();
  }
  std::vector<std::string> newest_first(placed.rbegin(), placed.rend());
  CHECK(listed == newest_first);
  check_problem(c.get("/customers/" + buyer.id + "/orders?limit=0", buyer.auth()), 400);
  check_problem(c.get("/customers/" + buyer.id + "/orders?cursor=bogus", buyer.auth()), 400);
}

TEST_CASE(
  "commerce: the authorization matrix: another customer's resources are 404, "
  "anonymous is 401 whatever the body, the admin is allowed except where only the owner is",
  "[e2e][commerce][authz]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {50, 700, 100});
  auto a = new_shopper(c);
  auto b = new_shopper(c);

  // B's resources: a cart with an item, and an order.
  auto cart = c.request("POST", "/carts", "", b.auth());
  INFO(show(cart));
  REQUIRE(cart.status == 201);
  auto cart_id = cart.json().at("id").get<std::string>();
  REQUIRE(c.request("PUT", "/carts/" + cart_id + "/items/" + product, json{{"quantity", 1}}.dump(),
                    b.auth())
            .status
          == 200);
  auto placed = c.request("POST", "/orders", order_body({{product, 1}}).dump(), b.auth());
  REQUIRE(placed.status == 201);
  auto order_id = placed.json().at("id").get<std::string>();

  struct call {
    std::string method;
    std::string target;
    std::string body;
  };
  auto checkout_body = json{{"shipping_address", address()}}.dump();
  std::vector<call> calls{
    {"GET", "/customers/" + b.id, ""},
    {"GET", "/customers/" + b.id + "/orders", ""},
    {"GET", "/carts/" + cart_id, ""},
    {"PUT", "/carts/" + cart_id + "/items/" + product, json{{"quantity", 2}}.dump()},
    {"POST", "/carts/" + cart_id + "/checkout", checkout_body},
    {"GET", "/orders/" + order_id, ""},
    {"POST", "/orders/" + order_id + "/payments", json{{"payment_method", "tok_visa"}}.dump()},
    {"POST", "/orders/" + order_id + "/cancel", ""},
    {"POST", "/orders/" + order_id + "/ship", ""},
    {"POST", "/orders/" + order_id + "/deliver", ""},
  };
  db d;
  auto stock_before = d.stock(product);
  for (const auto& k : calls) {
    INFO("customer A: " << k.method << " " << k.target);
    check_problem(c.request(k.method, k.target, k.body, a.auth()), 404);
  }
  for (const auto& k : calls) {
    INFO("anonymous: " << k.method << " " << k.target);
    auto r = c.request(k.method, k.target, k.body);
    check_problem(r, 401);
    CHECK(r.header("www-authenticate").find("Bearer") != std::string::npos);
  }
  // Neither changed anything.
  CHECK(d.status(order_id) == "pending_payment");
  CHECK(d.stock(product) == stock_before);
  CHECK(get_order(c, order_id, b.auth()).at("status") == "pending_payment");
  // A customer's own creation endpoints need a token too.
  check_problem(c.request("POST", "/carts", ""), 401);
  check_problem(c.request("POST", "/orders", order_body({{product, 1}}).dump()), 401);
  // Authentication comes before validation: an anonymous caller with a body that is not JSON,
  // not an object, or of the wrong content type is told 401, never what is wrong with the body.
  for (const auto& k : calls) {
    if (k.body.empty())
      continue;
    for (const std::string bad : {"{", "[]", "{\"quantity\": -5, \"payment_method\": 1}"}) {
      INFO("anonymous, bad body " << bad << ": " << k.method << " " << k.target);
      check_problem(c.request(k.method, k.target, bad), 401);
    }
    INFO("anonymous, text/plain: " << k.method << " " << k.target);
    check_problem(c.request(k.method, k.target, k.body, {{"Content-Type", "text/plain"}}), 401);
  }
  check_problem(c.request("POST", "/orders", "{"), 401);
  // A customer's token on an admin-only endpoint is 403.
  check_problem(c.request("POST", "/products",
                          json{{"sku", unique("com-sku")},
                               {"name", "x"},
                               {"price_cents", 1},
                               {"currency", "USD"},
                               {"stock", 1}}
                            .dump(),
                          a.auth()),
                403);
  // Ids of nothing are 404 for everyone.
  auto ghost = emporium::core::new_id("ord");
  check_problem(c.request("GET", "/orders/" + ghost, "", admin()), 404);
  check_problem(c.request("GET", "/orders/" + ghost, "", a.auth()), 404);
  check_problem(c.request("GET", "/orders/not-an-id", "", a.auth()), 404);
  check_problem(c.request("GET", "/customers/" + emporium::core::new_id("cust"), "", admin()), 404);
  // A token that is not one is 401, not anonymous.
  check_problem(c.request("GET", "/orders/" + order_id, "", {{"Authorization", "Bearer nope"}}),
                401);

  // The admin reaches all of them: an answer of the business, never 401, 403 or 404.
  auto as_admin = [&](const std::string& method, const std::string& target,
                      const std::string& body = "") {
    auto r = c.request(method, target, body, admin());
    INFO("admin: " << method << " " << target << " -> " << show(r));
    CHECK(r.status != 401);
    CHECK(r.status != 403);
    CHECK(r.status != 404);
    return r;
  };
  auto cust = as_admin("GET", "/customers/" + b.id);
  CHECK(cust.status == 200);
  CHECK(cust.json().at("id") == b.id);
  auto list = as_admin("GET", "/customers/" + b.id + "/orders");
  CHECK(list.status == 200);
  CHECK(list.json().at("items").size() == 1);
  CHECK(as_admin("GET", "/carts/" + cart_id).status == 200);
  CHECK(as_admin("GET", "/orders/" + order_id).status == 200);
  check_problem(as_admin("POST", "/orders/" + order_id + "/ship"), 409);    // not paid yet
  check_problem(as_admin("POST", "/orders/" + order_id + "/deliver"), 409); // not shipped
  // What only the owner does: changing a cart, checking it out, paying. The admin
  // gets 403 and nothing changes.
  for (const auto& k : calls) {
    if (k.target.find("/items/") == std::string::npos
        && k.target.find("/checkout") == std::string::npos
        && k.target.find("/payments") == std::string::npos)
      continue;
    INFO("admin on an owner-only action: " << k.method << " " << k.target);
    check_problem(c.request(k.method, k.target, k.body, admin()), 403);
  }
  CHECK(d.status(order_id) == "pending_payment");
  CHECK(d.stock(product) == stock_before);
  auto kept = as_admin("GET", "/carts/" + cart_id);
  REQUIRE(kept.status == 200);
  CHECK(kept.json().at("items").at(0).at("quantity") == 1);
  CHECK(kept.json().at("order_id").is_null());
  auto cancelled = as_admin("POST", "/orders/" + order_id + "/cancel");
  CHECK(cancelled.status == 200);
  // The owner still can.
  auto checkout = c.request("POST", "/carts/" + cart_id + "/checkout", checkout_body, b.auth());
  CHECK(checkout.status == 201);
}

TEST_CASE("commerce: loyalty points after paying, taken back when a paid order is cancelled",
          "[e2e][commerce][loyalty]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto cheap = create_product(c, {10, 1'599, 100});   // 15.99
  auto pricey = create_product(c, {10, 60'050, 100}); // 600.50
  auto buyer = new_shopper(c);
  auto loyalty = [&] { return get_customer(c, buyer).at("loyalty"); };
  CHECK(loyalty() == json{{"points", 0}, {"tier", "bronze"}});

  auto pay = [&](const std::string& product, int qty) {
    auto r = c.request("POST", "/orders", order_body({{product, qty}}).dump(), buyer.auth());
    INFO(show(r));
    REQUIRE(r.status == 201);
    auto id = r.json().at("id").get<std::string>();
    auto subtotal = r.json().at("subtotal_cents").get<std::int64_t>();
    auto p = c.request("POST", "/orders/" + id + "/payments",
                       json{{"payment_method", "tok_visa"}}.dump(), buyer.auth());
    INFO(show(p));
    REQUIRE(p.status == 200);
    return std::make_pair(id, subtotal);
  };
  auto [small, small_subtotal] = pay(cheap, 3); // 47.97: 47 points
  CHECK(small_subtotal == 4'797);
  CHECK(loyalty() == json{{"points", 47}, {"tier", "bronze"}});
  // Not credited again by an unpaid order, nor by a repeated payment.
  check_problem(c.request("POST", "/orders/" + small + "/payments",
                          json{{"payment_method", "tok_visa"}}.dump(), buyer.auth()),
                409);
  CHECK(loyalty().at("points") == 47);

  auto [big, big_subtotal] = pay(pricey, 2); // 1201.00: 1201 points
  CHECK(big_subtotal == 120'100);
  CHECK(loyalty() == json{{"points", 47 + 1'201}, {"tier", "silver"}});

  auto cancelled = c.request("POST", "/orders/" + big + "/cancel", "", admin());
  INFO(show(cancelled));
  REQUIRE(cancelled.status == 200);
  CHECK(loyalty() == json{{"points", 47}, {"tier", "bronze"}});
  // The admin sees the same.
  auto seen = c.get("/customers/" + buyer.id, admin());
  REQUIRE(seen.status == 200);
  CHECK(seen.json().at("loyalty").at("points") == 47);
  db d;
  CHECK(d.scalar("SELECT loyalty_points FROM customers WHERE id = $1", buyer.id) == 47);
}
