// Hostile input: control characters in text fields. A NUL would cut a name where PostgreSQL
// stores it, and a NUL in a shipping address would fail after stock had been held. Every text
// field refuses C0 control characters and DEL with 400 naming the field, before anything
// is held or written; only a product's description keeps tabs and line breaks.

#include "faults/fault_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

namespace {

using namespace emporium::faults;
using emporium::test::http_client;
using emporium::test::http_response;
using emporium::test::server_process;
using namespace std::chrono_literals;

server_process& input_server() {
  static server_process srv{fault_env()};
  srv.start();
  return srv;
}

/// A 400 problem whose errors[] names `field`.
void refused(const http_response& r, const std::string& field) {
  INFO(r.status << " " << r.body);
  REQUIRE(r.status == 400);
  CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
  bool named = false;
  auto body = r.json();
  for (const auto& e : body.at("errors"))
    named = named || e.at("field").get<std::string>() == field;
  CHECK(named);
}

std::int64_t stock_of(http_client& c, const std::string& product) {
  auto r = c.get("/products/" + product);
  REQUIRE(r.status == 200);
  return r.json().at("stock").get<std::int64_t>();
}

} // namespace

TEST_CASE(
  "a NUL or another control character in a customer's name is refused and nothing is "
  "stored",
  "[hostile][input]") {
  auto& srv = input_server();
  http_client c{srv.host(), srv.port(), 30s};
  for (std::string name : {std::string("Ann\0Evil", 8), std::string("Ann\x01"),
                           std::string("A\x7f"), std::string("Ann\nSmith")}) {
    auto email = emporium::test::unique("ctl") + "@example.com";
    auto r = c.request(
      "POST", "/customers",
      json{{"email", email}, {"name", name}, {"password", "a long password"}}.dump());
    refused(r, "name");
    // Nothing was stored: the email is still free.
    auto ok = c.request(
      "POST", "/customers",
      json{{"email", email}, {"name", "Ann"}, {"password", "a long password"}}.dump());
    CHECK(ok.status == 201);
  }
  auto r = c.request("POST", "/customers",
                     json{{"email", std::string("a\0b@example.com", 15)},
                          {"name", "Ann"},
                          {"password", "a long password"}}
                       .dump());
  refused(r, "email");
}

TEST_CASE(
  "a product's name refuses control characters and its description keeps tabs and "
  "line breaks",
  "[hostile][input]") {
  auto& srv = input_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto body = [](const std::string& name, const std::string& description) {
    return json{{"sku", emporium::test::unique("CTL")},
                {"name", name},
                {"description", description},
                {"price_cents", 100},
                {"currency", "USD"},
                {"stock", 1}}
      .dump();
  };
  refused(c.request("POST", "/products", body(std::string("Mug\0", 4), "plain"), admin()), "name");
  refused(c.request("POST", "/products", body("Mug", std::string("cut\0here", 8)), admin()),
          "description");
  refused(c.request("POST", "/products", body("Mug", "bell\x07"), admin()), "description");
  auto ok = c.request("POST", "/products", body("Mug", "line one\n\tindented\r\nline two"),
                      admin());
  INFO(ok.body);
  REQUIRE(ok.status == 201);
  CHECK(ok.json().at("description") == "line one\n\tindented\r\nline two");
  refused(c.get("/products?category=" + std::string("a%00b")), "category");
}

TEST_CASE("a NUL in a shipping address is refused before any stock is held", "[hostile][input]") {
  auto& srv = input_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, 3);
  auto buyer = new_shopper(c);
  auto body = order_body({{product, 3}});
  body["shipping_address"]["line1"] = std::string("1 Main St\0DROP", 14);
  refused(c.request("POST", "/orders", body.dump(), buyer.auth()), "shipping_address.line1");
  CHECK(stock_of(c, product) == 3);
  // No hold lingers: the whole stock can be ordered at once, right away.
  auto placed = c.request("POST", "/orders", order_body({{product, 3}}).dump(), buyer.auth());
  INFO(placed.body);
  CHECK(placed.status == 201);

  // Checkout likewise.
  auto other = create_product(c, 2);
  auto cart = c.request("POST", "/carts", "", buyer.auth());
  REQUIRE(cart.status == 201);
  auto cart_id = cart.json().at("id").get<std::string>();
  REQUIRE(c.request("PUT", "/carts/" + cart_id + "/items/" + other, json{{"quantity", 2}}.dump(),
                    buyer.auth())
            .status
          == 200);
  json checkout{{"shipping_address", address()}};
  checkout["shipping_address"]["city"] = std::string("Spring\x1b[31mfield");
  refused(c.request("POST", "/carts/" + cart_id + "/checkout", checkout.dump(), buyer.auth()),
          "shipping_address.city");
  CHECK(stock_of(c, other) == 2);
}
