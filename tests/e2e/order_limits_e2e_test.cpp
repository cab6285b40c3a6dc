// End-to-end: the limits on what one customer can hold (open unpaid orders, units per line,
// lines per order and cart) and which Idempotency-Key outcomes are replayed, through the real
// `emporium serve` binary against the test PostgreSQL and Redis. The database is shared: every
// product, customer and key here is new.

#include "core/ids.hpp"
#include "e2e/commerce_support.hpp"
#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

/// Small limits, so that the tests reach them in a few requests; the login bucket out of the way.
env_map limits_env(env_map extra = {}) {
  env_map env{{"EMPORIUM_RATE_LIMIT_LOGIN_CAPACITY", "1000000"},
              {"EMPORIUM_RATE_LIMIT_LOGIN_REFILL_PER_S", "1000000"},
              {"EMPORIUM_ORDERS_MAX_OPEN_UNPAID_PER_CUSTOMER", "2"},
              {"EMPORIUM_ORDERS_MAX_UNITS_PER_LINE", "5"},
              {"EMPORIUM_ORDERS_MAX_LINES", "3"}};
  for (auto& [k, v] : extra)
    env[k] = v;
  return env;
}

server_process& limits_server() {
  static server_process server{limits_env()};
  server.start();
  return server;
}

std::string create_product(http_client& c, std::int64_t stock = 100) {
  json body{{"sku", unique("lim-sku")}, {"name", "Limits widget"}, {"price_cents", 1'000},
            {"currency", "USD"},        {"stock", stock},          {"weight_grams", 100}};
  auto r = c.request("POST", "/products", body.dump(), admin());
  INFO("POST /products -> " << show(r));
  REQUIRE(r.status == 201);
  return r.json().at("id").get<std::string>();
}

struct shopper {
  std::string id;
  std::string token;
  header_map auth() const { return {{"Authorization", "Bearer " + token}}; }
};

shopper new_shopper(http_client& c) {
  auto email = unique("limits") + "@example.com";
  auto password = "pw-" + unique("secret");
  auto r = c.request("POST", "/customers",
                     json{{"email", email}, {"name", "Buyer"}, {"password", password}}.dump());
  INFO(show(r));
  REQUIRE(r.status == 201);
  auto l = c.request("POST", "/sessions", json{{"email", email}, {"password", password}}.dump());
  INFO(show(l));
  REQUIRE(l.status == 200);
  return shopper{r.json().at("id").get<std::string>(), l.json().at("token").get<std::string>()};
}

std::string new_cart(http_client& c, const shopper& s) {
  auto r = c.request("POST", "/carts", "", s.auth());
  INFO(show(r));
  REQUIRE(r.status == 201);
  return r.json().at("id").get<std::string>();
}

http_response put_item(http_client& c, const std::string& cart, const std::string& product,
                       int quantity, const shopper& s) {
  return c.request("PUT", "/carts/" + cart + "/items/" + product,
                   json{{"quantity", quantity}}.dump(), s.auth());
}

http_response checkout(http_client& c, const std::string& cart, const header_map& who) {
  return c.request("POST", "/carts/" + cart + "/checkout",
                   json{{"shipping_address", address()}}.dump(), who);
}

std::string placed(const http_response& r) {
  INFO(show(r));
  REQUIRE(r.status == 201);
  return r.json().at("id").get<std::string>();
}

struct db {
  pqxx::connection conn{pg_url()};

  std::int64_t scalar(const std::string& sql, const std::string& arg) {
    pqxx::read_transaction tx{conn};
    auto r = tx.exec_params(sql, arg);
    return r.at(0)[0].is_null() ? 0 : r.at(0)[0].as<std::int64_t>();
  }
  std::int64_t stock(const std::string& product) {
    return scalar("SELECT stock FROM products WHERE id = $1", product);
  }
  std::int64_t orders_of(const std::string& customer) {
    return scalar("SELECT count(*) FROM orders WHERE customer_id = $1", customer);
  }
  std::int64_t unpaid_of(const std::string& customer) {
    return scalar(
      "SELECT count(*) FROM orders WHERE customer_id = $1 "
      "AND status = 'pending_payment'",
      customer);
  }
  void exec(const std::string& sql, const std::string& a, const std::string& b) {
    pqxx::work tx{conn};
    tx.exec_params(sql, a, b);
    tx.commit();
  }
};

/// Releases every waiting thread at once, so that their requests really race.
class start_gate {
 public:
  explicit start_gate(int n) : waiting_(n) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock{mtx_};
    if (--waiting_ == 0) {
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [this] { return waiting_ == 0; });
  }

 private:
  std::mutex mtx_;
  std::condition_variable cv_;
  int waiting_;
};

} // namespace

// -- open unpaid orders -------------------------------------------------------------------------

TEST_CASE(
  "limits: a customer's unpaid orders are capped (409), and paying or cancelling one frees "
  "a slot",
  "[e2e][limits]") {
  auto& srv = limits_server();
  http_client c{srv.host(), srv.port(), 30s};
  db d;
  auto product = create_product(c);
  auto buyer = new_shopper(c);
  auto body = order_body({{product, 1}}).dump();

  auto first = placed(c.request("POST", "/orders", body, buyer.auth()));
  placed(c.request("POST", "/orders", body, buyer.auth()));
  auto refused = check_problem(c.request("POST", "/orders", body, buyer.auth()), 409);
  CHECK(refused.value("detail", "").find("unpaid") != std::string::npos);
  CHECK(d.orders_of(buyer.id) == 2);
  CHECK(d.stock(product) == 98); // the refused order took nothing

  // Another customer is not affected.
  auto other = new_shopper(c);
  placed(c.request("POST", "/orders", body, other.auth()));

  // Paying one frees its slot.
  auto paid = c.request("POST", "/orders/" + first + "/payments",
                        json{{"payment_method", "tok_visa"}}.dump(), buyer.auth());
  INFO(show(paid));
  REQUIRE(paid.status == 200);
  auto third = placed(c.request("POST", "/orders", body, buyer.auth()));
  check_problem(c.request("POST", "/orders", body, buyer.auth()), 409);

  // So does cancelling one; and a cart's checkout counts like any order.
  auto cancelled = c.request("POST", "/orders/" + third + "/cancel", "", buyer.auth());
  INFO(show(cancelled));
  REQUIRE(cancelled.status == 200);
  auto cart = new_cart(c, buyer);
  REQUIRE(put_item(c, cart, product, 1, buyer).status == 200);
  placed(checkout(c, cart, buyer.auth()));
  auto cart2 = new_cart(c, buyer);
  REQUIRE(put_item(c, cart2, product, 1, buyer).status == 200);
  check_problem(checkout(c, cart2, with(buyer.auth(), "Idempotency-Key", unique("cap"))), 409);
  CHECK(d.unpaid_of(buyer.id) == 2);
}

TEST_CASE("limits: concurrent orders of one customer through two nodes never exceed the cap",
          "[e2e][limits]") {
  auto& one = limits_server();
  server_process two{limits_env()};
  two.start();
  http_client c{one.host(), one.port(), 30s};
  db d;
  auto buyer = new_shopper(c);
  constexpr int per_node = 4;
  // One product each: no stock row serialises the placements, only the cap's lock can.
  std::vector<std::string> products, bodies;
  for (int i = 0; i < 2 * per_node; ++i) {
    products.push_back(create_product(c));
    bodies.push_back(order_body({{products.back(), 1}}).dump());
  }

  std::vector<int> statuses(2 * per_node, 0);
  start_gate gate{2 * per_node};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2 * per_node; ++i)
    threads.emplace_back([&, i] {
      auto& srv = i % 2 == 0 ? one : two;
      http_client mine{srv.host(), srv.port(), 30s};
      mine.connect();
      gate.arrive_and_wait();
      try {
        statuses[i] = mine.request("POST", "/orders", bodies[i], buyer.auth()).status;
      } catch (const std::exception&) {
        statuses[i] = -1;
      }
    });
  for (auto& t : threads)
    t.join();
  int created = 0;
  for (int s : statuses) {
    INFO("statuses: " << json(statuses).dump());
    CHECK((s == 201 || s == 409));
    created += s == 201;
  }
  CHECK(created == 2);
  CHECK(d.unpaid_of(buyer.id) == 2);
  std::int64_t stock = 0;
  for (const auto& p : products)
    stock += d.stock(p);
  CHECK(stock == 2 * per_node * 100 - 2);
}

// -- units per line and lines per order -----------------------------------------------------------

TEST_CASE("limits: units of one product per order and per cart item (400 naming the field)",
          "[e2e][limits]") {
  auto& srv = limits_server();
  http_client c{srv.host(), srv.port(), 30s};
  db d;
  auto a = create_product(c);
  auto b = create_product(c);
  auto buyer = new_shopper(c);

  auto over = check_problem(
    c.request("POST", "/orders", order_body({{a, 1}, {b, 6}}).dump(), buyer.auth()), 400);
  CHECK(names_field(over, "items[1].quantity"));
  // A product listed twice counts with its quantities added.
  auto twice = check_problem(
    c.request("POST", "/orders", order_body({{a, 3}, {a, 3}}).dump(), buyer.auth()), 400);
  CHECK(names_field(twice, "items"));
  CHECK(d.orders_of(buyer.id) == 0);
  CHECK(d.stock(a) == 100);
  CHECK(d.stock(b) == 100);
  placed(c.request("POST", "/orders", order_body({{a, 5}}).dump(), buyer.auth()));

  auto cart = new_cart(c, buyer);
  auto item = check_problem(put_item(c, cart, a, 6, buyer), 400);
  CHECK(names_field(item, "quantity"));
  REQUIRE(put_item(c, cart, a, 5, buyer).status == 200);
  auto view = c.get("/carts/" + cart, buyer.auth());
  REQUIRE(view.status == 200);
  CHECK(view.json().at("items").at(0).at("quantity") == 5);
}

TEST_CASE(
  "limits: a cart holds at most orders.max_lines products, and checkout refuses a cart "
  "over it (422) without placing anything",
  "[e2e][limits]") {
  db d;
  std::vector<std::string> products;
  shopper buyer;
  std::string cart;
  {
    // A node with a looser limit lets the cart take 4 products...
    server_process loose{limits_env({{"EMPORIUM_ORDERS_MAX_LINES", "4"}})};
    loose.start();
    http_client c{loose.host(), loose.port(), 30s};
    buyer = new_shopper(c);
    cart = new_cart(c, buyer);
    for (int i = 0; i < 5; ++i)
      products.push_back(create_product(c));
    for (int i = 0; i < 4; ++i) {
      auto r = put_item(c, cart, products[i], 1, buyer);
      INFO(show(r));
      REQUIRE(r.status == 200);
    }
    // ...and no more.
    auto fifth = check_problem(put_item(c, cart, products[4], 1, buyer), 422);
    CHECK(names_field(fifth, "product_id"));
    CHECK(loose.stop_term() == 0);
  }
  // ...which is one more than a node with max_lines 3 checks out.
  auto& srv = limits_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto refused = check_problem(checkout(c, cart, buyer.auth()), 422);
  CHECK(names_field(refused, "items"));
  auto keyed = with(buyer.auth(), "Idempotency-Key", unique("lines"));
  check_problem(checkout(c, cart, keyed), 422);
  CHECK(d.orders_of(buyer.id) == 0);
  for (const auto& p : products)
    CHECK(d.stock(p) == 100);
  // Growing it further is refused; changing a quantity in it is not, nor shrinking it.
  check_problem(put_item(c, cart, products[4], 1, buyer), 422);
  REQUIRE(put_item(c, cart, products[0], 2, buyer).status == 200);
  REQUIRE(put_item(c, cart, products[3], 0, buyer).status == 200);
  // The same key now checks the cart out: the refusal was not recorded under it.
  placed(checkout(c, cart, keyed));
  CHECK(d.orders_of(buyer.id) == 1);
  CHECK(d.stock(products[0]) == 98);
  CHECK(d.stock(products[3]) == 100);
}

// -- which Idempotency-Key outcomes are replayed
// ----------------------------------------------------

TEST_CASE("limits: only verdicts on the request itself are replayed under an Idempotency-Key",
          "[e2e][limits][idempotency]") {
  auto& srv = limits_server();
  http_client c{srv.host(), srv.port(), 30s};
  db d;
  auto product = create_product(c, 2);
  auto buyer = new_shopper(c);

  SECTION("an address no zone serves is answered the same on a retry") {
    auto headers = with(buyer.auth(), "Idempotency-Key", unique("idem-zone"));
    auto body = order_body({{product, 1}}, "ZZ").dump();
    auto first = check_problem(c.request("POST", "/orders", body, headers), 422);
    auto retry = check_problem(c.request("POST", "/orders", body, headers), 422);
    first.erase("instance");
    retry.erase("instance");
    CHECK(first == retry);
    CHECK(d.orders_of(buyer.id) == 0);
    CHECK(d.stock(product) == 2);
  }

  SECTION("an out-of-stock answer found stored under the key is not replayed") {
    auto key = unique("idem-legacy");
    auto body = order_body({{product, 1}}).dump();
    auto hash = emporium::core::sha256_hex(json::parse(body).dump());
    d.exec("INSERT INTO idempotency_keys (customer_id, key, request_hash, status, outcome) "
           "VALUES ('" + buyer.id + "', $1, $2, 1005, "
           "'{\"code\":5,\"detail\":\"insufficient stock\",\"errors\":[]}')",
           key, hash);
    auto r = c.request("POST", "/orders", body, with(buyer.auth(), "Idempotency-Key", key));
    placed(r);
    CHECK(d.stock(product) == 1);
    auto again = c.request("POST", "/orders", body, with(buyer.auth(), "Idempotency-Key", key));
    CHECK(again.body == r.body);
  }

  SECTION("a checkout refused for stock is not replayed once the cart is fixed") {
    auto cart = new_cart(c, buyer);
    REQUIRE(put_item(c, cart, product, 2, buyer).status == 200);
    REQUIRE(c.request("PATCH", "/products/" + product, json{{"stock", 1}}.dump(), admin()).status
            == 200);
    auto headers = with(buyer.auth(), "Idempotency-Key", unique("idem-cart"));
    check_problem(checkout(c, cart, headers), 409);
    REQUIRE(put_item(c, cart, product, 1, buyer).status == 200);
    placed(checkout(c, cart, headers));
    CHECK(d.stock(product) == 0);
  }
}

TEST_CASE(
  "limits: a stored answer that cannot be decoded is a 500 problem, logged, and the "
  "server goes on serving",
  "[e2e][limits][idempotency]") {
  auto& srv = limits_server();
  http_client c{srv.host(), srv.port(), 30s};
  db d;
  auto product = create_product(c);
  auto buyer = new_shopper(c);
  auto key = unique("idem-corrupt");
  auto headers = with(buyer.auth(), "Idempotency-Key", key);
  auto body = order_body({{product, 1}}).dump();
  placed(c.request("POST", "/orders", body, headers));

  SECTION("a stored order") {
    d.exec(
      "UPDATE idempotency_keys SET outcome = '{\"id\": 7}' "
      "WHERE customer_id = $1 AND key = $2",
      buyer.id, key);
  }
  SECTION("a stored failure") {
    d.exec(
      "UPDATE idempotency_keys SET status = 1002, outcome = '[1, 2]' "
      "WHERE customer_id = $1 AND key = $2",
      buyer.id, key);
  }
  check_problem(c.request("POST", "/orders", body, headers), 500);
  check_problem(c.request("POST", "/orders", body, headers), 500); // the same again
  CHECK(srv.running());
  CHECK(srv.log_tail(20'000).find("cannot be decoded") != std::string::npos);
  CHECK(c.get("/healthz").status == 200);
  auto fresh = c.request("POST", "/orders", body,
                         with(buyer.auth(), "Idempotency-Key", unique("idem-corrupt")));
  INFO(show(fresh));
  CHECK(fresh.status == 201);
}

// -- retention ------------------------------------------------------------------------------------

TEST_CASE("retention: a running server deletes old outbox events and keeps recent ones",
          "[e2e][retention]") {
  server_process srv{limits_env({{"EMPORIUM_RETENTION_INTERVAL_S", "1"}})};
  srv.start(); // migrated: the tables exist
  db d;
  auto old_entity = "order:" + emporium::core::new_id("ord");
  auto recent_entity = "order:" + emporium::core::new_id("ord");
  d.exec(
    "INSERT INTO events (entity, seq, type, payload, created_at) VALUES "
    "($1, 1, 'order_status', '{}', now() - interval '200 hours'), "
    "($2, 1, 'order_status', '{}', now() - interval '100 hours')",
    old_entity, recent_entity);
  auto count = [&](const std::string& entity) {
    return d.scalar("SELECT count(*) FROM events WHERE entity = $1", entity);
  };
  // The next run (every second here) deletes it; the deadline only bounds a failure.
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (count(old_entity) != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(100ms);
  CHECK(count(old_entity) == 0);
  CHECK(count(recent_entity) == 1);
  CHECK(srv.log_tail(20'000).find("retention: deleted") != std::string::npos);
}
