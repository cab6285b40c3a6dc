// Validation of the commerce request bodies (http/customer_codec, cart_codec, order_codec):
// customers, logins, orders, checkouts, cart quantities, payments, Idempotency-Key values, and
// the canonical hash that decides whether two requests under one key are "the same JSON value".

#include "core/ids.hpp"
#include "http/cart_codec.hpp"
#include "http/customer_codec.hpp"
#include "http/order_codec.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace emporium;
using namespace emporium::http;
using nlohmann::json;

namespace {

const std::string prod_a = core::new_id("prod");
const std::string prod_b = core::new_id("prod");

json customer() {
  return json{{"email", "ada@example.com"}, {"name", "Ada"}, {"password", "correct horse"}};
}

json address() {
  return json{{"name", "Ada Lovelace"},
              {"line1", "1 Main St"},
              {"city", "Springfield"},
              {"postal_code", "12345"},
              {"country", "US"}};
}

json order(json items = json()) {
  if (items.is_null())
    items = json::array({{{"product_id", prod_a}, {"quantity", 2}}});
  return json{{"items", std::move(items)}, {"shipping_address", address()}};
}

template <class T>
std::vector<std::string> fields(const result<T>& r) {
  std::vector<std::string> out;
  if (!r.ok())
    for (const auto& e : r.error().errors)
      out.push_back(e.field);
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

/// Decodes an order and expects 400 naming `field`.
void order_rejected(const json& body, const std::string& field, int max_lines = 50) {
  INFO(body.dump());
  auto r = codec::decode_order_request(body.dump(), max_lines, 1000);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == errc::invalid_input);
  INFO("fields: " << json(fields(r)).dump());
  CHECK(has(fields(r), field));
}

std::string hash_of(const std::string& body) {
  auto r = codec::decode_order_request(body, 50, 1000);
  REQUIRE(r.ok());
  return r->request_hash;
}

} // namespace

TEST_CASE("customer draft: a valid one decodes", "[commerce][codec]") {
  auto r = codec::decode_customer_draft(customer().dump());
  REQUIRE(r.ok());
  CHECK(r->email == "ada@example.com");
  CHECK(r->name == "Ada");
  CHECK(r->password == "correct horse");
}

TEST_CASE("customer draft: email, name and password are checked", "[commerce][codec]") {
  for (const char* bad : {"", "ada", "@example.com", "ada@", "ada@example", "ada@.com",
                          "ada@example.", "a@b@example.com", "ada lovelace@example.com"}) {
    auto body = customer();
    body["email"] = bad;
    INFO("email " << bad);
    auto r = codec::decode_customer_draft(body.dump());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::invalid_input);
    CHECK(has(fields(r), "email"));
  }
  {
    auto body = customer();
    body["email"] = 42;
    CHECK(has(fields(codec::decode_customer_draft(body.dump())), "email"));
  }
  for (const char* missing : {"email", "name", "password"}) {
    auto body = customer();
    body.erase(missing);
    INFO("without " << missing);
    CHECK(has(fields(codec::decode_customer_draft(body.dump())), missing));
  }
  {
    auto body = customer();
    body["name"] = "";
    CHECK(has(fields(codec::decode_customer_draft(body.dump())), "name"));
    body["name"] = "   ";
    CHECK(has(fields(codec::decode_customer_draft(body.dump())), "name"));
  }
  // Password: 8 to 128 characters (counted as characters, not bytes).
  auto with_password = [](const json& pw) {
    auto body = customer();
    body["password"] = pw;
    return codec::decode_customer_draft(body.dump());
  };
  CHECK(has(fields(with_password(std::string(7, 'x'))), "password"));
  CHECK(with_password(std::string(8, 'x')).ok());
  CHECK(with_password(std::string(128, 'x')).ok());
  CHECK(has(fields(with_password(std::string(129, 'x'))), "password"));
  std::string eight_euros;
  for (int i = 0; i < 8; ++i)
    eight_euros += "\xE2\x82\xAC"; // 8 characters, 24 bytes
  CHECK(with_password(eight_euros).ok());
  std::string many_euros;
  for (int i = 0; i < 128; ++i)
    many_euros += "\xE2\x82\xAC"; // 128 characters, 384 bytes
  CHECK(with_password(many_euros).ok());
  CHECK(has(fields(with_password(12345678)), "password"));
  CHECK(has(fields(with_password(nullptr)), "password"));
  // Unknown fields and non-objects.
  {
    auto body = customer();
    body["admin"] = true;
    CHECK(has(fields(codec::decode_customer_draft(body.dump())), "admin"));
  }
  CHECK_FALSE(codec::decode_customer_draft("[]").ok());
  CHECK_FALSE(codec::decode_customer_draft("{").ok());
  CHECK(codec::decode_customer_draft("nope").error().code == errc::invalid_input);
}

TEST_CASE("login: email and password are required strings", "[commerce][codec]") {
  auto ok = codec::decode_login(R"({"email":"ada@example.com","password":"whatever"})");
  REQUIRE(ok.ok());
  CHECK(ok->email == "ada@example.com");
  CHECK(ok->password == "whatever");
  // A short password is not ruled out at login (it simply does not match).
  CHECK(codec::decode_login(R"({"email":"ada@example.com","password":"x"})").ok());

  CHECK(has(fields(codec::decode_login(R"({"password":"whatever"})")), "email"));
  CHECK(has(fields(codec::decode_login(R"({"email":"ada@example.com"})")), "password"));
  CHECK(
    has(fields(codec::decode_login(R"({"email":"ada@example.com","password":""})")), "password"));
  CHECK(
    has(fields(codec::decode_login(R"({"email":"ada@example.com","password":7})")), "password"));
  CHECK(has(fields(codec::decode_login(R"({"email":1,"password":"whatever"})")), "email"));
  CHECK(has(fields(codec::decode_login(
              R"({"email":"ada@example.com","password":"whatever","remember":true})")),
            "remember"));
  CHECK(codec::decode_login("[1]").error().code == errc::invalid_input);
}

TEST_CASE("order request: a valid one decodes", "[commerce][codec]") {
  auto body = order(json::array(
    {{{"product_id", prod_a}, {"quantity", 2}}, {{"product_id", prod_b}, {"quantity", 1000}}}));
  body["shipping_address"]["line2"] = "Apt 4";
  body["shipping_address"]["region"] = "IL";
  auto r = codec::decode_order_request(body.dump(), 50, 1000);
  REQUIRE(r.ok());
  REQUIRE(r->items.size() == 2);
  CHECK(r->items[0].product_id == prod_a);
  CHECK(r->items[0].quantity == 2);
  CHECK(r->items[1].quantity == 1000);
  CHECK(r->shipping_address.country == "US");
  CHECK(r->shipping_address.line2 == "Apt 4");
  CHECK(r->shipping_address.region == "IL");
  CHECK(r->request_hash.size() == 64);
  CHECK_FALSE(r->idempotency_key);
  CHECK_FALSE(r->cart_id);
}

TEST_CASE("order request: items are 1..max lines of product ids and quantities 1..1000",
          "[commerce][codec]") {
  order_rejected(json{{"shipping_address", address()}}, "items");
  order_rejected(order(json::array()), "items");
  order_rejected(order(json::object()), "items");
  order_rejected(order("prod"), "items");
  // max_lines
  json three = json::array();
  for (int i = 0; i < 3; ++i)
    three.push_back({{"product_id", core::new_id("prod")}, {"quantity", 1}});
  CHECK(codec::decode_order_request(order(three).dump(), 3, 1000).ok());
  order_rejected(order(three), "items", 2);
  // Product ids.
  order_rejected(order(json::array({{{"quantity", 1}}})), "items[0].product_id");
  order_rejected(order(json::array({{{"product_id", "prod_nope"}, {"quantity", 1}}})),
                 "items[0].product_id");
  order_rejected(order(json::array({{{"product_id", core::new_id("cust")}, {"quantity", 1}}})),
                 "items[0].product_id");
  order_rejected(order(json::array({{{"product_id", 12}, {"quantity", 1}}})),
                 "items[0].product_id");
  // Quantities.
  for (const json& q :
       {json(0), json(-1), json(1001), json(1.5), json("2"), json(nullptr), json(1e30)}) {
    INFO("quantity " << q.dump());
    order_rejected(order(json::array({{{"product_id", prod_a}, {"quantity", q}}})),
                   "items[0].quantity");
  }
  order_rejected(order(json::array({{{"product_id", prod_a}}})), "items[0].quantity");
  // The second line is named by its index.
  order_rejected(order(json::array({{{"product_id", prod_a}, {"quantity", 1}},
                                    {{"product_id", prod_b}, {"quantity", 0}}})),
                 "items[1].quantity");
  order_rejected(order(json::array({{{"product_id", prod_a}, {"quantity", 1}}, 7})), "items[1]");
  // Unknown fields, in the line and at the top.
  order_rejected(order(json::array({{{"product_id", prod_a}, {"quantity", 1}, {"price", 1}}})),
                 "items[0].price");
  {
    auto body = order();
    body["coupon"] = "FREE";
    order_rejected(body, "coupon");
  }
  // One product listed twice counts with its quantities added: at most 1000 in all.
  CHECK(
    codec::decode_order_request(order(json::array({{{"product_id", prod_a}, {"quantity", 500}},
                                                   {{"product_id", prod_a}, {"quantity", 500}}}))
                                  .dump(),
                                50, 1000)
      .ok());
  order_rejected(order(json::array({{{"product_id", prod_a}, {"quantity", 500}},
                                    {{"product_id", prod_a}, {"quantity", 501}}})),
                 "items");
}

TEST_CASE("order request: the shipping address is checked field by field", "[commerce][codec]") {
  {
    auto body = order();
    body.erase("shipping_address");
    order_rejected(body, "shipping_address");
    body["shipping_address"] = "1 Main St";
    order_rejected(body, "shipping_address");
  }
  for (const char* required : {"name", "line1", "city", "postal_code", "country"}) {
    auto body = order();
    body["shipping_address"].erase(required);
    order_rejected(body, std::string{"shipping_address."} + required);
    body["shipping_address"][required] = "";
    order_rejected(body, std::string{"shipping_address."} + required);
    body["shipping_address"][required] = 5;
    order_rejected(body, std::string{"shipping_address."} + required);
  }
  for (const char* country : {"us", "USA", "U", "U1", "Us", "12"}) {
    auto body = order();
    body["shipping_address"]["country"] = country;
    INFO("country " << country);
    order_rejected(body, "shipping_address.country");
  }
  {
    auto body = order();
    body["shipping_address"]["postal_code"] = std::string(21, '1');
    order_rejected(body, "shipping_address.postal_code");
    body = order();
    body["shipping_address"]["name"] = std::string(201, 'n');
    order_rejected(body, "shipping_address.name");
    body = order();
    body["shipping_address"]["phone"] = "555";
    order_rejected(body, "shipping_address.phone");
  }
  // An address in no shipping zone is well-formed: that is decided later (422), not here.
  auto body = order();
  body["shipping_address"]["country"] = "AQ";
  CHECK(codec::decode_order_request(body.dump(), 50, 1000).ok());
}

TEST_CASE("order request: every problem is reported at once", "[commerce][codec]") {
  json body{{"items", json::array({{{"product_id", "x"}, {"quantity", 0}}})},
            {"shipping_address", {{"country", "usa"}}},
            {"extra", 1}};
  auto r = codec::decode_order_request(body.dump(), 50, 1000);
  REQUIRE_FALSE(r.ok());
  auto f = fields(r);
  for (const char* field : {"items[0].product_id", "items[0].quantity", "shipping_address.country",
                            "shipping_address.name", "extra"})
    CHECK(has(f, field));
}

TEST_CASE("checkout: only a valid shipping address", "[commerce][codec]") {
  auto ok = codec::decode_checkout(json{{"shipping_address", address()}}.dump());
  REQUIRE(ok.ok());
  CHECK(ok->shipping_address.city == "Springfield");
  CHECK(ok->items.empty());
  CHECK(ok->request_hash.size() == 64);

  CHECK(has(fields(codec::decode_checkout("{}")), "shipping_address"));
  auto extra = json{{"shipping_address", address()}, {"items", json::array()}};
  CHECK(has(fields(codec::decode_checkout(extra.dump())), "items"));
  auto bad = json{{"shipping_address", address()}};
  bad["shipping_address"]["country"] = "de";
  CHECK(has(fields(codec::decode_checkout(bad.dump())), "shipping_address.country"));
  CHECK_FALSE(codec::decode_checkout("not json").ok());

  // Equal addresses hash equal, different ones not.
  auto a = codec::decode_checkout(R"({"shipping_address":{"name":"A","line1":"L","city":"C",
                                      "postal_code":"1","country":"US"}})");
  auto b = codec::decode_checkout(R"({"shipping_address":{"country":"US","postal_code":"1",
                                      "city":"C","line1":"L","name":"A"}})");
  auto c = codec::decode_checkout(R"({"shipping_address":{"country":"US","postal_code":"2",
                                      "city":"C","line1":"L","name":"A"}})");
  REQUIRE((a.ok() && b.ok() && c.ok()));
  CHECK(a->request_hash == b->request_hash);
  CHECK(a->request_hash != c->request_hash);
}

TEST_CASE("cart quantity: 0..1000, an integer", "[commerce][codec]") {
  CHECK(*codec::decode_quantity(R"({"quantity":0})", 1000) == 0);
  CHECK(*codec::decode_quantity(R"({"quantity":1})", 1000) == 1);
  CHECK(*codec::decode_quantity(R"({"quantity":1000})", 1000) == 1000);
  for (const char* bad :
       {R"({"quantity":1001})", R"({"quantity":-1})", R"({"quantity":2.5})", R"({"quantity":"3"})",
        R"({"quantity":null})", R"({})", R"({"quantity":1,"note":"x"})",
        R"({"quantity":18446744073709551615})", "[]", "3", ""}) {
    INFO(bad);
    auto r = codec::decode_quantity(bad, 1000);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::invalid_input); // 400
  }
  CHECK(has(fields(codec::decode_quantity(R"({"quantity":1001})", 1000)), "quantity"));
}

TEST_CASE("orders.max_units_per_line bounds a line, a repeated product and a cart item",
          "[commerce][codec]") {
  const std::string prod = prod_a;
  auto order = [&](json items) {
    return json{
      {"items", std::move(items)},
      {"shipping_address",
       {{"name", "A"}, {"line1", "L"}, {"city", "C"}, {"postal_code", "1"}, {"country", "US"}}}}
      .dump();
  };
  CHECK(codec::decode_order_request(order({{{"product_id", prod}, {"quantity", 5}}}), 50, 5).ok());
  auto over = codec::decode_order_request(order({{{"product_id", prod}, {"quantity", 6}}}), 50, 5);
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().code == errc::invalid_input);
  CHECK(has(fields(over), "items[0].quantity"));
  auto twice = codec::decode_order_request(
    order({{{"product_id", prod}, {"quantity", 3}}, {{"product_id", prod}, {"quantity", 3}}}), 50,
    5);
  REQUIRE_FALSE(twice.ok());
  CHECK(has(fields(twice), "items"));
  CHECK(*codec::decode_quantity(R"({"quantity":5})", 5) == 5);
  CHECK(has(fields(codec::decode_quantity(R"({"quantity":6})", 5)), "quantity"));
}

TEST_CASE("payment: a token such as tok_visa", "[commerce][codec]") {
  for (const char* ok : {"tok_visa", "tok_declined", "tok_flaky", "tok_ABC_123"}) {
    auto r = codec::decode_payment(json{{"payment_method", ok}}.dump());
    INFO(ok);
    REQUIRE(r.ok());
    CHECK(*r == ok);
  }
  for (const json& bad :
       {json("visa"), json("tok_"), json("tok_vi sa"), json("tok_visa!"), json("TOK_visa"),
        json(""), json(7), json(nullptr), json("tok_" + std::string(125, 'x'))}) {
    INFO(bad.dump());
    auto r = codec::decode_payment(json{{"payment_method", bad}}.dump());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::invalid_input);
    CHECK(has(fields(r), "payment_method"));
  }
  CHECK(has(fields(codec::decode_payment("{}")), "payment_method"));
  CHECK(
    has(fields(codec::decode_payment(R"({"payment_method":"tok_visa","amount":5})")), "amount"));
}

TEST_CASE("Idempotency-Key: 1..255 visible ASCII characters", "[commerce][codec]") {
  CHECK(codec::valid_idempotency_key("a"));
  CHECK(codec::valid_idempotency_key("order-2024-01-01T00:00:00Z/42"));
  CHECK(codec::valid_idempotency_key(std::string(255, 'k')));
  CHECK_FALSE(codec::valid_idempotency_key(""));
  CHECK_FALSE(codec::valid_idempotency_key(std::string(256, 'k')));
  CHECK_FALSE(codec::valid_idempotency_key("has space"));
  CHECK_FALSE(codec::valid_idempotency_key("tab\there"));
  CHECK_FALSE(codec::valid_idempotency_key("nl\n"));
  CHECK_FALSE(codec::valid_idempotency_key(std::string("nul\0x", 5)));
  CHECK_FALSE(codec::valid_idempotency_key("del\x7f"));
  CHECK_FALSE(codec::valid_idempotency_key("caf\xC3\xA9"));
}

TEST_CASE("canonical request hash: the same JSON value hashes the same", "[commerce][codec]") {
  const auto a = prod_a;
  const auto b = prod_b;
  auto compact = "{\"items\":[{\"product_id\":\"" + a + "\",\"quantity\":2},{\"product_id\":\"" + b
                 + "\",\"quantity\":1}],\"shipping_address\":{\"name\":\"N\",\"line1\":\"L\","
                   "\"city\":\"C\",\"postal_code\":\"1\",\"country\":\"US\"}}";
  auto reordered =
    "{ \"shipping_address\" : { \"country\":\"US\", \"postal_code\":\"1\", "
    "\"city\":\"C\", \"line1\":\"L\", \"name\":\"N\" },\n  \"items\": [ { "
    "\"quantity\": 2, \"product_id\": \""
    + a + "\" }, {\"quantity\":1,\"product_id\":\"" + b + "\"} ] }";
  auto escaped = compact;
  escaped.replace(escaped.find("\"N\""), 3, "\"\\u004E\""); // "N" written as a \u escape
  CHECK(hash_of(compact) == hash_of(reordered));
  CHECK(hash_of(compact) == hash_of(escaped));

  // Different values hash differently: another quantity, another line order (arrays are
  // ordered), another address field, an added optional field.
  auto other_qty = compact;
  other_qty.replace(other_qty.find("\"quantity\":2"), 12, "\"quantity\":3");
  CHECK(hash_of(compact) != hash_of(other_qty));
  auto swapped = "{\"items\":[{\"product_id\":\"" + b + "\",\"quantity\":1},{\"product_id\":\"" + a
                 + "\",\"quantity\":2}],\"shipping_address\":{\"name\":\"N\",\"line1\":\"L\","
                   "\"city\":\"C\",\"postal_code\":\"1\",\"country\":\"US\"}}";
  CHECK(hash_of(compact) != hash_of(swapped));
  auto other_city = compact;
  other_city.replace(other_city.find("\"C\""), 3, "\"D\"");
  CHECK(hash_of(compact) != hash_of(other_city));
  auto with_line2 = compact;
  with_line2.replace(with_line2.find("\"country\""), 9, "\"line2\":\"x\",\"country\"");
  CHECK(hash_of(compact) != hash_of(with_line2));
}
