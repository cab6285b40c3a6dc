// End-to-end: orders: stock races (one product, many products in opposite orders), Idempotency-Key
// races and replays, orders that cannot be filled, admin changes meanwhile. Through the real
// `emporium serve` binary against the test PostgreSQL and Redis; the commerce tests share one
// server (shop::commerce_server()). The database is shared: every product, customer and key here is
// new and unique, nothing assumes empty tables. Catch2 assertions are not thread-safe: worker
// threads only record what they saw; the checks run on the test's thread afterwards.

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

TEST_CASE("commerce: 200 concurrent orders for a product with stock 50 sell exactly 50",
          "[e2e][commerce][race]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {50, 1'000, 100});
  auto buyers = new_shoppers(srv, 8);

  constexpr int orders = 200;
  constexpr int threads = 40;
  auto body = order_body({{product, 1}}).dump();
  auto started = steady::now();
  auto answers = race(srv, threads, orders, [&](http_client& cl, int k) {
    return cl.request("POST", "/orders", body, buyers[k % buyers.size()].auth());
  });
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started);
  std::cerr << "[measure] 200 concurrent orders (40 threads, stock 50): " << took.count()
            << " ms\n";

  int created = 0, refused = 0;
  std::set<std::string> ids;
  for (int k = 0; k < orders; ++k) {
    const auto& a = answers[k];
    INFO("order " << k << ": " << a.status << " " << a.body << a.error);
    REQUIRE(a.error.empty());
    REQUIRE((a.status == 201 || a.status == 409));
    if (a.status == 201) {
      ++created;
      auto o = json::parse(a.body);
      ids.insert(o.at("id").get<std::string>());
      CHECK(a.location.find("/orders/" + o.at("id").get<std::string>()) != std::string::npos);
      CHECK(o.at("status") == "pending_payment");
      REQUIRE(o.at("items").size() == 1);
      CHECK(o["items"][0].at("product_id") == product);
      CHECK(o["items"][0].at("quantity") == 1);
    } else {
      ++refused;
      CHECK(a.content_type.rfind("application/problem+json", 0) == 0);
      // The problem names the product short of stock.
      CHECK(a.body.find(product) != std::string::npos);
    }
  }
  CHECK(created == 50);
  CHECK(refused == 150);
  CHECK(ids.size() == 50);

  db d;
  CHECK(d.stock(product) == 0);
  CHECK(d.ordered(product) == 50);
  CHECK(d.orders_with(product) == 50);
  CHECK(api_stock(c, product) == 0);
}

TEST_CASE(
  "commerce: multi-line orders racing on overlapping products in opposite orders: no "
  "deadlock, all or nothing, stock conserved",
  "[e2e][commerce][race]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  constexpr int products = 4;
  constexpr std::int64_t initial = 40;
  std::vector<std::string> pids;
  for (int i = 0; i < products; ++i)
    pids.push_back(create_product(c, {initial, 500 + 100 * i, 50}));
  auto buyers = new_shoppers(srv, 8);

  // Each order takes 2 to 4 of the products; even threads list them in one order, odd threads
  // in the opposite one; quantities 1..3.
  constexpr int orders = 160;
  constexpr int threads = 32;
  std::vector<std::vector<std::pair<std::string, int>>> wanted(orders);
  for (int k = 0; k < orders; ++k) {
    int width = 2 + k % 3;
    int first = (k / 3) % products;
    for (int j = 0; j < width; ++j)
      wanted[k].push_back({pids[(first + j) % products], 1 + (k + j) % 3});
    if ((k % threads) % 2 == 1)
      std::reverse(wanted[k].begin(), wanted[k].end());
  }
  auto started = steady::now();
  auto answers = race(srv, threads, orders, [&](http_client& cl, int k) {
    return cl.request("POST", "/orders", order_body(wanted[k]).dump(),
                      buyers[k % buyers.size()].auth());
  });
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started);
  std::cerr << "[measure] 160 multi-line orders racing on 4 products (32 threads): " << took.count()
            << " ms\n";
  auto count_of = [&](int status) {
    return std::count_if(answers.begin(), answers.end(),
                         [status](const answer& a) { return a.status == status; });
  };
  std::cerr << "[measure]   " << count_of(201) << " created, " << count_of(409) << " refused\n";

  db d;
  int created = 0, refused = 0;
  for (int k = 0; k < orders; ++k) {
    const auto& a = answers[k];
    INFO("order " << k << ": " << a.status << " " << a.body << a.error);
    REQUIRE(a.error.empty()); // answered before the deadline: no deadlock, no hang
    REQUIRE((a.status == 201 || a.status == 409));
    if (a.status == 409) {
      ++refused;
      CHECK(a.content_type.rfind("application/problem+json", 0) == 0);
      continue;
    }
    ++created;
    // All or nothing: the answer and the stored lines are exactly the lines asked for.
    auto o = json::parse(a.body);
    std::map<std::string, std::int64_t> asked, answered;
    for (const auto& [id, q] : wanted[k])
      asked[id] += q;
    for (const auto& l : o.at("items"))
      answered[l.at("product_id").get<std::string>()] += l.at("quantity").get<std::int64_t>();
    CHECK(answered == asked);
    CHECK(d.lines(o.at("id").get<std::string>()) == asked);
  }
  CHECK(created > 0);
  CHECK(refused > 0); // the stock was really contended
  // A refused order left nothing behind: only the created ones are in the database.
  {
    pqxx::read_transaction tx{d.conn};
    auto n = tx.exec_params(
                 "SELECT count(DISTINCT order_id) FROM order_lines WHERE product_id = "
                 "ANY($1::text[])",
                 "{" + pids[0] + "," + pids[1] + "," + pids[2] + "," + pids[3] + "}")
               .at(0)[0]
               .as<int>();
    CHECK(n == created);
  }
  for (const auto& p : pids) {
    INFO("product " << p);
    auto final_stock = d.stock(p);
    CHECK(final_stock >= 0);
    CHECK(initial - final_stock == d.ordered(p));
    CHECK(api_stock(c, p) == final_stock);
  }
}

TEST_CASE(
  "commerce: 20 concurrent requests with one Idempotency-Key make one order and 20 "
  "identical answers, and another body under that key is 422",
  "[e2e][commerce][idempotency]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {100, 1'234, 100});
  auto buyer = new_shopper(c);
  auto key = unique("idem-key");
  auto headers = with(buyer.auth(), "Idempotency-Key", key);
  auto body = order_body({{product, 3}});

  constexpr int n = 20;
  auto answers = race(srv, n, n, [&](http_client& cl, int) {
    return cl.request("POST", "/orders", body.dump(), headers);
  });
  for (int t = 0; t < n; ++t) {
    INFO("request " << t << ": " << answers[t].status << " " << answers[t].body
                    << answers[t].error);
    REQUIRE(answers[t].error.empty());
    CHECK(answers[t].status == 201);
    CHECK(answers[t].body == answers[0].body);
    CHECK(answers[t].location == answers[0].location);
  }
  auto id = json::parse(answers[0].body).at("id").get<std::string>();

  db d;
  CHECK(d.orders_of(buyer.id) == 1);
  CHECK(d.scalar("SELECT count(*) FROM idempotency_keys WHERE customer_id = $1 AND key = $2",
                 buyer.id, key)
        == 1);
  CHECK(d.stock(product) == 97);
  CHECK(d.ordered(product) == 3);

  // The same JSON value written differently is the same request: the original answer.
  auto respaced = "{ \"shipping_address\": " + address().dump(2) + ",\n \"items\": [ {\"quantity\": 3, "
                  "\"product_id\": \"" + product + "\"} ] }";
  auto again = c.request("POST", "/orders", respaced, headers);
  INFO(show(again));
  CHECK(again.status == 201);
  CHECK(again.body == answers[0].body);

  // Another body under the used key: 422, and still one order.
  auto other = c.request("POST", "/orders", order_body({{product, 4}}).dump(), headers);
  check_problem(other, 422);
  CHECK(d.orders_of(buyer.id) == 1);
  CHECK(d.stock(product) == 97);

  // The key belongs to its customer: another customer using it places their own order.
  auto stranger = new_shopper(c);
  auto theirs = c.request("POST", "/orders", body.dump(),
                          with(stranger.auth(), "Idempotency-Key", key));
  INFO(show(theirs));
  REQUIRE(theirs.status == 201);
  CHECK(theirs.json().at("id") != id);
  CHECK(d.stock(product) == 94);

  // Keys are durable: after a restart the same request still answers the original order.
  c.close();
  CHECK(srv.restart() == 0);
  auto after = c.request("POST", "/orders", body.dump(), headers);
  INFO(show(after));
  CHECK(after.status == 201);
  CHECK(after.body == answers[0].body);
  CHECK(d.orders_of(buyer.id) == 1);
  CHECK(d.stock(product) == 94);
}

TEST_CASE("commerce: one Idempotency-Key raced with two different bodies makes one order",
          "[e2e][commerce][idempotency]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {100, 1'000, 100});
  auto buyer = new_shopper(c);
  auto headers = with(buyer.auth(), "Idempotency-Key", unique("idem-race"));
  const std::string bodies[2] = {order_body({{product, 1}}).dump(),
                                 order_body({{product, 2}}).dump()};
  constexpr int n = 20;
  auto answers = race(srv, n, n, [&](http_client& cl, int t) {
    return cl.request("POST", "/orders", bodies[t % 2], headers);
  });
  // Exactly one of the bodies won; its requests got the order, the other body's got 422.
  std::set<std::string> created;
  std::set<int> winners;
  for (int t = 0; t < n; ++t) {
    INFO("request " << t << ": " << answers[t].status << " " << answers[t].body
                    << answers[t].error);
    REQUIRE(answers[t].error.empty());
    REQUIRE((answers[t].status == 201 || answers[t].status == 422));
    if (answers[t].status == 201) {
      created.insert(answers[t].body);
      winners.insert(t % 2);
    }
  }
  REQUIRE(created.size() == 1);
  REQUIRE(winners.size() == 1);
  int winner = *winners.begin();
  for (int t = 0; t < n; ++t)
    CHECK(answers[t].status == (t % 2 == winner ? 201 : 422));
  db d;
  CHECK(d.orders_of(buyer.id) == 1);
  CHECK(d.stock(product) == 100 - (winner + 1));
}

TEST_CASE(
  "commerce: an order refused for stock under an Idempotency-Key is not replayed: the "
  "retry after a restock places it",
  "[e2e][commerce][idempotency]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {2, 1'000, 100});
  auto buyer = new_shopper(c);
  auto headers = with(buyer.auth(), "Idempotency-Key", unique("idem-refused"));
  auto body = order_body({{product, 3}}).dump();
  auto first = c.request("POST", "/orders", body, headers);
  check_problem(first, 409);
  db d;
  CHECK(d.scalar("SELECT count(*) FROM idempotency_keys WHERE customer_id = $1 AND key = $2",
                 buyer.id, headers["Idempotency-Key"])
        == 0);
  // More stock arrives; the retry under the same key is a new attempt, and succeeds.
  REQUIRE(c.request("PATCH", "/products/" + product, json{{"stock", 10}}.dump(), admin()).status
          == 200);
  auto retry = c.request("POST", "/orders", body, headers);
  INFO(show(retry));
  REQUIRE(retry.status == 201);
  CHECK(d.orders_of(buyer.id) == 1);
  CHECK(d.stock(product) == 7);
  // That success is what the key answers from now on.
  auto again = c.request("POST", "/orders", body, headers);
  CHECK(again.status == 201);
  CHECK(again.body == retry.body);
  CHECK(d.orders_of(buyer.id) == 1);
  CHECK(d.stock(product) == 7);
}

TEST_CASE(
  "commerce: an order refused for an unknown product under an Idempotency-Key is not kept "
  "by the key: a retry is a new attempt",
  "[e2e][commerce][idempotency]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {5, 1'000, 100});
  auto buyer = new_shopper(c);
  auto headers = with(buyer.auth(), "Idempotency-Key", unique("idem-unknown"));
  // A product id the client has, which this shop does not (yet) know.
  auto ghost = emporium::core::new_id("prod");
  auto body = order_body({{product, 1}, {ghost, 1}}).dump();
  auto first = c.request("POST", "/orders", body, headers);
  check_problem(first, 400);
  CHECK(first.body.find(ghost) != std::string::npos);
  db d;
  CHECK(d.scalar("SELECT count(*) FROM idempotency_keys WHERE customer_id = $1 AND key = $2",
                 buyer.id, headers["Idempotency-Key"])
        == 0);
  // The retry without the unknown line is not answered with the first refusal.
  auto retry = c.request("POST", "/orders", order_body({{product, 1}}).dump(), headers);
  INFO(show(retry));
  CHECK(retry.status == 201);
  CHECK(d.stock(product) == 4);
}

TEST_CASE("commerce: an order that cannot be filled moves no stock and leaves no hold behind",
          "[e2e][commerce][orders]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto buyer = new_shopper(c);
  db d;
  // Each refused order below held its first line before failing; the order placed right after
  // it takes that product's whole stock, so it succeeds only if the hold was released (not left
  // to expire).
  auto place = [&](const json& body) {
    return c.request("POST", "/orders", body.dump(), buyer.auth());
  };

  SECTION("a line short of stock: 409 naming that product only") {
    auto a = create_product(c, {5, 100, 10});
    auto b = create_product(c, {2, 100, 10});
    auto r = place(order_body({{a, 1}, {b, 3}}));
    check_problem(r, 409);
    CHECK(r.body.find(b) != std::string::npos);
    CHECK(r.body.find(a) == std::string::npos);
    CHECK(d.stock(a) == 5);
    CHECK(d.stock(b) == 2);
    auto all = place(order_body({{a, 5}}));
    INFO(show(all));
    CHECK(all.status == 201);
    CHECK(d.stock(a) == 0);
  }

  SECTION("two lines short: both named") {
    auto a = create_product(c, {1, 100, 10});
    auto b = create_product(c, {1, 100, 10});
    auto ok = create_product(c, {3, 100, 10});
    auto r = place(order_body({{ok, 1}, {a, 2}, {b, 2}}));
    check_problem(r, 409);
    CHECK(r.body.find(a) != std::string::npos);
    CHECK(r.body.find(b) != std::string::npos);
    CHECK(place(order_body({{ok, 3}})).status == 201);
  }

  SECTION("an unknown product: 400 naming it") {
    auto a = create_product(c, {4, 100, 10});
    auto ghost = emporium::core::new_id("prod");
    auto r = place(order_body({{a, 2}, {ghost, 1}}));
    check_problem(r, 400);
    CHECK(r.body.find(ghost) != std::string::npos);
    CHECK(d.stock(a) == 4);
    CHECK(place(order_body({{a, 4}})).status == 201);
  }

  SECTION("products in two currencies: 400") {
    auto usd = create_product(c, {3, 100, 10, "USD"});
    auto eur = create_product(c, {3, 100, 10, "EUR"});
    check_problem(place(order_body({{usd, 1}, {eur, 1}})), 400);
    CHECK(d.stock(usd) == 3);
    CHECK(d.stock(eur) == 3);
    CHECK(place(order_body({{usd, 3}})).status == 201);
    CHECK(place(order_body({{eur, 3}})).status == 201);
  }

  SECTION("an address no zone serves: 422") {
    auto a = create_product(c, {2, 100, 10});
    check_problem(place(order_body({{a, 2}}, "AQ")), 422);
    CHECK(d.stock(a) == 2);
    auto r = place(order_body({{a, 2}}, "DE"));
    INFO(show(r));
    REQUIRE(r.status == 201);
    CHECK(r.json().at("shipping_cents") == 899); // europe, USD, up to 1 kg
  }

  SECTION("a parcel heavier than any bracket: 422") {
    auto heavy = create_product(c, {2, 100, 20'000});
    check_problem(place(order_body({{heavy, 2}})), 422); // 40 kg
    CHECK(d.stock(heavy) == 2);
    CHECK(place(order_body({{heavy, 1}})).status == 201);
  }

  SECTION("one product listed twice counts once, with the quantities added") {
    auto a = create_product(c, {5, 100, 10});
    check_problem(place(order_body({{a, 3}, {a, 3}})), 409);
    CHECK(d.stock(a) == 5);
    auto r = place(order_body({{a, 2}, {a, 3}}));
    INFO(show(r));
    REQUIRE(r.status == 201);
    REQUIRE(r.json().at("items").size() == 1);
    CHECK(r.json()["items"][0].at("quantity") == 5);
    CHECK(d.stock(a) == 0);
  }

  SECTION("prices are copied into the order: a later price change does not alter it") {
    auto a = create_product(c, {5, 1'000, 10});
    auto r = place(order_body({{a, 2}}));
    REQUIRE(r.status == 201);
    auto id = r.json().at("id").get<std::string>();
    REQUIRE(
      c.request("PATCH", "/products/" + a, json{{"price_cents", 5'000}}.dump(), admin()).status
      == 200);
    auto o = get_order(c, id, buyer.auth());
    CHECK(o.at("items")[0].at("unit_price_cents") == 1'000);
    CHECK(o.at("subtotal_cents") == 2'000);
    CHECK(o.at("total_cents") == 2'000 + 499);
  }
}

TEST_CASE(
  "commerce: an admin PATCH without If-Match succeeds while orders take the product's "
  "stock",
  "[e2e][commerce][race]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {1'000, 1'000, 10});
  auto buyers = new_shoppers(srv, 4);
  constexpr int order_threads = 4;
  constexpr int patches = 40;
  std::atomic<bool> done{false};
  std::vector<answer> patched(patches);
  std::vector<int> created(order_threads, 0), other(order_threads, 0);
  std::vector<std::string> errors(order_threads + 1);
  std::vector<std::unique_ptr<http_client>> clients(order_threads + 1);
  in_parallel(
    order_threads + 1,
    [&](int t) { clients[t] = std::make_unique<http_client>(srv.host(), srv.port(), 30s); },
    [&](int t) {
      try {
        if (t == order_threads) { // the admin
          for (int k = 0; k < patches; ++k) {
            patched[k] = record(clients[t]->request(
              "PATCH", "/products/" + product, json{{"price_cents", 2'000 + k}}.dump(), admin()));
            std::this_thread::sleep_for(5ms);
          }
          done = true;
          return;
        }
        while (!done) {
          auto r = clients[t]->request("POST", "/orders", order_body({{product, 1}}).dump(),
                                       buyers[t].auth());
          (r.status == 201 ? created[t] : other[t])++;
        }
      } catch (const std::exception& e) {
        errors[t] = e.what();
        done = true;
      }
    });
  for (const auto& e : errors)
    CHECK(e.empty());
  int orders = 0;
  for (int t = 0; t < order_threads; ++t) {
    CHECK(other[t] == 0);
    orders += created[t];
  }
  std::cerr << "[measure] " << orders << " orders placed while " << patches << " PATCHes ran\n";
  int refused = 0;
  for (int k = 0; k < patches; ++k) {
    INFO("PATCH " << k << ": " << patched[k].status << " " << patched[k].body);
    CHECK(patched[k].status == 200);
    refused += patched[k].status != 200;
  }
  std::cerr << "[measure] PATCH refused: " << refused << " of " << patches << "\n";
  db d;
  auto p = c.get("/products/" + product);
  REQUIRE(p.status == 200);
  CHECK(p.json().at("price_cents") == 2'000 + patches - 1);
  CHECK(p.json().at("stock") == d.stock(product));
  CHECK(d.stock(product) == 1'000 - orders);
  CHECK(d.ordered(product) == orders);
}

TEST_CASE(
  "commerce: 64 concurrent orders of one hot product under Idempotency-Keys never "
  "oversell, and every 201 is in the database with its stock event",
  "[e2e][commerce][race]") {
  // Orders that arrive together are committed together (one transaction per batch): a batch
  // must place exactly the orders that fit, one after another, and answer each with its own
  // committed outcome.
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  constexpr std::int64_t stock = 40;
  auto product = create_product(c, {stock, 1'000, 100});
  std::vector<shopper> buyers;
  for (int i = 0; i < 4; ++i) // one at a time: sign-ups are shed when many wait
    buyers.push_back(new_shopper(c));
  constexpr int orders = 64;
  auto answers = race(srv, orders, orders, [&](http_client& cl, int k) {
    auto headers = with(buyers[k % buyers.size()].auth(), "Idempotency-Key",
                        "hot-" + product + "-" + std::to_string(k));
    return cl.request("POST", "/orders", order_body({{product, k % 2 + 1}}).dump(), headers);
  });
  db d;
  std::int64_t sold = 0;
  int created = 0;
  for (int k = 0; k < orders; ++k) {
    const auto& a = answers[k];
    INFO("order " << k << ": " << a.status << " " << a.body << a.error);
    REQUIRE(a.error.empty());
    REQUIRE((a.status == 201 || a.status == 409));
    if (a.status != 201)
      continue;
    ++created;
    auto o = json::parse(a.body);
    auto id = o.at("id").get<std::string>();
    // Acknowledged means committed: the order and its line are in PostgreSQL.
    CHECK(d.lines(id) == std::map<std::string, std::int64_t>{{product, k % 2 + 1}});
    CHECK(d.status(id) == "pending_payment");
    sold += k % 2 + 1;
  }
  CHECK(sold <= stock);
  CHECK(sold >= stock - 1); // 64 orders of 1 or 2 units ask for more than there is
  CHECK(d.stock(product) == stock - sold);
  CHECK(d.ordered(product) == sold);
  CHECK(d.orders_with(product) == created);
  // One stock_changed event per placed order, dense seqs.
  CHECK(d.scalar("SELECT count(*) FROM events WHERE entity = $1 AND type = 'stock_changed'",
                 "product:" + product)
        == created);
  CHECK(d.scalar("SELECT max(seq) - count(*) FROM events WHERE entity = $1", "product:" + product)
        == 0);
  CHECK(api_stock(c, product) == stock - sold);
}
