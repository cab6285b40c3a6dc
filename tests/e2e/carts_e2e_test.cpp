// End-to-end: carts: items at current prices with a shipping quote, concurrent changes, one
// currency, checkout, unshippable parcels, expiry. Through the real `emporium serve` binary against
// the test PostgreSQL and Redis; the commerce tests share one server (shop::commerce_server()). The
// database is shared: every product, customer and key here is new and unique, nothing assumes empty
// tables. Catch2 assertions are not thread-safe: worker threads only record what they saw; the
// checks run on the test's thread afterwards.

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
  "commerce: carts: items at current prices with a quote, kept across a restart, "
  "checked out once",
  "[e2e][commerce][carts]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto p1 = create_product(c, {20, 1'000, 300});
  auto p2 = create_product(c, {20, 250, 100});
  auto buyer = new_shopper(c);
  db d;

  auto created = c.request("POST", "/carts", "", buyer.auth());
  INFO(show(created));
  REQUIRE(created.status == 201);
  auto cart = created.json();
  auto id = cart.at("id").get<std::string>();
  CHECK(id.rfind("cart_", 0) == 0);
  CHECK(created.header("location").find("/carts/" + id) != std::string::npos);
  CHECK(cart.at("customer_id") == buyer.id);
  CHECK(cart.at("items").empty());
  CHECK(cart.at("order_id").is_null());

  auto put = [&](const std::string& product, const json& quantity) {
    return put_cart_item(c, id, product, quantity, buyer.auth());
  };
  auto view = [&] { return get_cart(c, id, buyer.auth()); };

  // An unknown product (a well-formed id of none) is 404; quantity 1001 is 400.
  check_problem(put(emporium::core::new_id("prod"), 1), 404);
  auto too_many = put(p1, 1001);
  check_problem(too_many, 400);
  CHECK(too_many.body.find("quantity") != std::string::npos);
  check_problem(put(p1, -1), 400);

  auto r = put(p1, 2);
  INFO(show(r));
  REQUIRE(r.status == 200);
  r = put(p2, 4);
  REQUIRE(r.status == 200);
  auto v = r.json();
  REQUIRE(v.at("items").size() == 2);
  CHECK(v.at("currency") == "USD");
  CHECK(v.at("subtotal_cents") == 2 * 1'000 + 4 * 250);
  CHECK(v.at("shipping_cents") == 499); // US, 1,000 g: the first bracket, bound included
  CHECK(v.at("total_cents") == 3'000 + 499);
  r = put(p2, 5);
  REQUIRE(r.status == 200);
  v = r.json();
  CHECK(v.at("subtotal_cents") == 2 * 1'000 + 5 * 250);
  CHECK(v.at("shipping_cents") == 999); // 1,100 g: the second domestic bracket
  CHECK(v.at("total_cents") == 3'250 + 999);
  for (const auto& item : v.at("items"))
    CHECK(item.at("line_total_cents")
          == item.at("unit_price_cents").get<int>() * item.at("quantity").get<int>());
  // Setting an item again replaces its quantity; 0 removes it.
  REQUIRE(put(p2, 1).status == 200);
  r = put(p2, 0);
  REQUIRE(r.status == 200);
  v = r.json();
  REQUIRE(v.at("items").size() == 1);
  CHECK(v["items"][0].at("product_id") == p1);
  CHECK(v["items"][0].at("quantity") == 2);
  CHECK(v.at("subtotal_cents") == 2'000);
  CHECK(v.at("shipping_cents") == 499); // 600 g
  CHECK(v.at("total_cents") == 2'499);
  // Removing what is not there changes nothing.
  REQUIRE(put(p2, 0).status == 200);

  // Current prices: a price change shows in the cart.
  auto patched = c.request("PATCH", "/products/" + p1, json{{"price_cents", 1'500}}.dump(),
                           admin());
  INFO(show(patched));
  REQUIRE(patched.status == 200);
  v = view();
  CHECK(v["items"][0].at("unit_price_cents") == 1'500);
  CHECK(v["items"][0].at("line_total_cents") == 3'000);
  CHECK(v.at("subtotal_cents") == 3'000);
  CHECK(v.at("total_cents") == 3'000 + 499);
  // A quote for another country.
  auto de = c.get("/carts/" + id + "?country=DE", buyer.auth());
  REQUIRE(de.status == 200);
  CHECK(de.json().at("shipping_cents") == 899);

  // Carts persist across a restart.
  c.close();
  CHECK(srv.restart() == 0);
  v = view();
  REQUIRE(v.at("items").size() == 1);
  CHECK(v["items"][0].at("product_id") == p1);
  CHECK(v["items"][0].at("quantity") == 2);
  CHECK(v.at("subtotal_cents") == 3'000);

  // An address no zone serves is 422, and the cart stays open.
  auto stock_before = d.stock(p1);
  auto nowhere = c.request("POST", "/carts/" + id + "/checkout",
                           json{{"shipping_address", address("AQ")}}.dump(), buyer.auth());
  check_problem(nowhere, 422);
  CHECK(d.stock(p1) == stock_before);
  CHECK(view().at("order_id").is_null());

  // Checkout: an order at the cart's prices, with Location.
  auto out = c.request("POST", "/carts/" + id + "/checkout",
                       json{{"shipping_address", address("US")}}.dump(), buyer.auth());
  INFO(show(out));
  REQUIRE(out.status == 201);
  auto order = out.json();
  auto order_id = order.at("id").get<std::string>();
  CHECK(out.header("location").find("/orders/" + order_id) != std::string::npos);
  CHECK(order.at("status") == "pending_payment");
  CHECK(order.at("customer_id") == buyer.id);
  REQUIRE(order.at("items").size() == 1);
  CHECK(order["items"][0].at("unit_price_cents") == 1'500);
  CHECK(order.at("subtotal_cents") == 3'000);
  CHECK(order.at("shipping_cents") == 499);
  CHECK(order.at("total_cents") == 3'499);
  CHECK(d.stock(p1) == stock_before - 2);

  // Afterwards the cart names its order and refuses changes.
  CHECK(view().at("order_id") == order_id);
  check_problem(put(p2, 1), 409);
  check_problem(c.request("POST", "/carts/" + id + "/checkout",
                          json{{"shipping_address", address("US")}}.dump(), buyer.auth()),
                409);
  CHECK(d.stock(p1) == stock_before - 2);
  CHECK(d.orders_of(buyer.id) == 1);

  // Also after a restart (read back from PostgreSQL).
  c.close();
  CHECK(srv.restart() == 0);
  CHECK(view().at("order_id") == order_id);
  check_problem(put(p2, 1), 409);
}

TEST_CASE("commerce: concurrent changes to one cart are all kept", "[e2e][commerce][carts]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  constexpr int n = 10;
  std::vector<std::string> products;
  for (int i = 0; i < n; ++i)
    products.push_back(create_product(c, {10, 100 + i, 10}));
  auto buyer = new_shopper(c);
  auto id = new_cart(c, buyer);
  auto answers = race(srv, n, n, [&](http_client& cl, int t) {
    return cl.request("PUT", "/carts/" + id + "/items/" + products[t],
                      json{{"quantity", t + 1}}.dump(), buyer.auth());
  });
  for (const auto& a : answers) {
    INFO(a.status << " " << a.body << a.error);
    CHECK(a.status == 200);
  }
  auto v = c.get("/carts/" + id, buyer.auth());
  REQUIRE(v.status == 200);
  INFO("GET /carts/" << id << " -> " << v.body);
  std::map<std::string, int> items;
  auto view = v.json();
  for (const auto& it : view.at("items"))
    items[it.at("product_id").get<std::string>()] = it.at("quantity").get<int>();
  REQUIRE(items.size() == static_cast<std::size_t>(n));
  for (int t = 0; t < n; ++t)
    CHECK(items[products[t]] == t + 1);
}

TEST_CASE("commerce: pipelined changes to one cart take effect in the order they were sent",
          "[e2e][commerce][carts][pipelining]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10, 100, 10});
  auto buyer = new_shopper(c);
  auto id = new_cart(c, buyer);
  auto raw = [&](const std::string& method, const std::string& target, const std::string& body) {
    std::string r = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                    + buyer.token + "\r\n";
    if (!body.empty())
      r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size())
           + "\r\n";
    return r + "\r\n" + body;
  };
  auto quantity = [&](const json& cart) {
    for (const auto& item : cart.at("items"))
      if (item.at("product_id") == product)
        return item.at("quantity").get<int>();
    return 0;
  };

  // Quantities 1 to 5, then a read, in one write: the server reads them all at once and must
  // hand them to the cart in that order, each change seeing the one before.
  constexpr int changes = 5;
  std::string wire;
  for (int q = 1; q <= changes; ++q)
    wire += raw("PUT", "/carts/" + id + "/items/" + product, json{{"quantity", q}}.dump());
  wire += raw("GET", "/carts/" + id, "");
  http_client pipelined{srv.host(), srv.port(), 30s};
  pipelined.send_raw(wire);
  for (int q = 1; q <= changes; ++q) {
    auto r = pipelined.read_response();
    INFO("answer to the change to " << q << ": " << show(r));
    REQUIRE(r.status == 200);
    CHECK(quantity(r.json()) == q);
  }
  auto last = pipelined.read_response();
  INFO("answer to the read: " << show(last));
  REQUIRE(last.status == 200);
  CHECK(quantity(last.json()) == changes);
  CHECK(quantity(get_cart(c, id, buyer.auth())) == changes);
}

TEST_CASE("commerce: a cart holds one currency, and checkout honours Idempotency-Key",
          "[e2e][commerce][carts]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto usd = create_product(c, {10, 1'000, 100, "USD"});
  auto eur = create_product(c, {10, 900, 100, "EUR"});
  auto buyer = new_shopper(c);
  db d;
  auto id = new_cart(c, buyer);
  auto put = [&](const std::string& product, int quantity) {
    return put_cart_item(c, id, product, quantity, buyer.auth());
  };
  REQUIRE(put(usd, 2).status == 200);
  // A product in another currency cannot join: its price would be added to dollars.
  auto mixed = put(eur, 1);
  INFO(show(mixed));
  check_problem(mixed, 400);
  auto v = c.get("/carts/" + id, buyer.auth());
  REQUIRE(v.status == 200);
  CHECK(v.json().at("items").size() == 1);
  CHECK(v.json().at("currency") == "USD");
  CHECK(v.json().at("subtotal_cents") == 2'000);

  // Checkout with a key: a replay answers the same order, another key finds the cart used.
  auto key = unique("checkout-key");
  auto body = json{{"shipping_address", address()}}.dump();
  auto first = c.request("POST", "/carts/" + id + "/checkout", body,
                         with(buyer.auth(), "Idempotency-Key", key));
  INFO(show(first));
  REQUIRE(first.status == 201);
  auto replay = c.request("POST", "/carts/" + id + "/checkout", body,
                          with(buyer.auth(), "Idempotency-Key", key));
  CHECK(replay.status == 201);
  CHECK(replay.body == first.body);
  auto other_key = c.request("POST", "/carts/" + id + "/checkout", body,
                             with(buyer.auth(), "Idempotency-Key", unique("checkout-key")));
  check_problem(other_key, 409);
  CHECK(d.orders_of(buyer.id) == 1);
  CHECK(d.stock(usd) == 8);
  // The refused attempt held the stock for a moment only: the rest can still be ordered.
  auto rest = c.request("POST", "/orders", order_body({{usd, 8}}).dump(), buyer.auth());
  INFO(show(rest));
  CHECK(rest.status == 201);

  // Once the cart switched currency by emptying it, the other currency is fine.
  id = new_cart(c, buyer);
  REQUIRE(put(eur, 1).status == 200);
  REQUIRE(put(eur, 0).status == 200);
  auto now_usd = put(usd, 0); // removing an absent item is fine
  CHECK(now_usd.status == 200);
  CHECK(put(eur, 2).status == 200);
}

TEST_CASE(
  "commerce: a cart change that makes the parcel unshippable is refused and saves "
  "nothing, and a cart made unshippable behind its back still shows and shrinks",
  "[e2e][commerce][carts]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto heavy = create_product(c, {5, 1'000, 20'000}); // 20 kg; domestic brackets end at 30 kg
  auto light = create_product(c, {5, 100, 100});
  auto buyer = new_shopper(c);
  auto id = new_cart(c, buyer);
  auto put = [&](const std::string& product, int quantity) {
    return put_cart_item(c, id, product, quantity, buyer.auth());
  };
  auto view = [&] { return get_cart(c, id, buyer.auth()); };
  auto quantity_of = [](const json& cart, const std::string& product) {
    for (const auto& i : cart.at("items"))
      if (i.at("product_id") == product)
        return i.at("quantity").get<int>();
    return 0;
  };

  auto r = put(heavy, 1);
  INFO(show(r));
  REQUIRE(r.status == 200);
  CHECK(r.json().at("shipping_cents").is_number());
  CHECK_FALSE(r.json().contains("shipping_problem"));

  // 40 kg: no bracket ships it. Refused, and the cart is what it was (also in PostgreSQL:
  // the version did not move, so the next change still applies).
  auto refused = put(heavy, 2);
  check_problem(refused, 422);
  CHECK(refused.body.find("heavier") != std::string::npos);
  auto v = view();
  CHECK(quantity_of(v, heavy) == 1);
  CHECK(v.at("shipping_cents").is_number());
  REQUIRE(put(light, 1).status == 200);

  // The product gets heavier behind the cart's back: the cart still shows, without a quote and
  // saying why; checkout is 422; more of anything is refused; less is accepted.
  auto patched = c.request("PATCH", "/products/" + heavy, json{{"weight_grams", 40'000}}.dump(),
                           admin());
  INFO(show(patched));
  REQUIRE(patched.status == 200);
  v = view();
  CHECK(v.at("shipping_cents").is_null());
  CHECK(v.at("total_cents").is_null());
  CHECK(v.at("subtotal_cents") == 1'000 + 100);
  CHECK(v.at("shipping_problem").get<std::string>().find("heavier") != std::string::npos);
  check_problem(c.request("POST", "/carts/" + id + "/checkout",
                          json{{"shipping_address", address("US")}}.dump(), buyer.auth()),
                422);
  check_problem(put(light, 2), 422);
  CHECK(quantity_of(view(), light) == 1);
  r = put(light, 0);
  REQUIRE(r.status == 200);
  CHECK(quantity_of(r.json(), light) == 0);
  CHECK(r.json().contains("shipping_problem"));
  r = put(heavy, 0);
  REQUIRE(r.status == 200);
  CHECK(r.json().at("items").empty());
  REQUIRE(put(light, 3).status == 200);
  auto out = c.request("POST", "/carts/" + id + "/checkout",
                       json{{"shipping_address", address("US")}}.dump(), buyer.auth());
  INFO(show(out));
  CHECK(out.status == 201);
}

TEST_CASE("commerce: a cart untouched for carts.ttl_s expires", "[e2e][commerce][carts]") {
  server_process srv{commerce_env({{"EMPORIUM_CARTS_TTL_S", "3"}})};
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10, 100, 10});
  auto buyer = new_shopper(c);
  auto id = new_cart(c, buyer);
  // Changing it extends its life: 1.8 s + 1.8 s is past the first expiry, not the second.
  std::this_thread::sleep_for(1800ms);
  REQUIRE(c.request("PUT", "/carts/" + id + "/items/" + product, json{{"quantity", 1}}.dump(),
                    buyer.auth())
            .status
          == 200);
  std::this_thread::sleep_for(1800ms);
  CHECK(c.get("/carts/" + id, buyer.auth()).status == 200);
  std::this_thread::sleep_for(3500ms);
  check_problem(c.get("/carts/" + id, buyer.auth()), 404);
  check_problem(c.request("PUT", "/carts/" + id + "/items/" + product, json{{"quantity", 2}}.dump(),
                          buyer.auth()),
                404);
  check_problem(c.request("POST", "/carts/" + id + "/checkout",
                          json{{"shipping_address", address()}}.dump(), buyer.auth()),
                404);
}
