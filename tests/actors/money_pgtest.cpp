// Money and state against the real PostgreSQL and Redis: a stock change whose answer was lost
// (it committed after the order actor gave up) still reaches the product actors' memory.

#include "actors/runtime.hpp"
#include "persistence/backend.hpp"
#include "persistence/migrations.hpp"
#include "persistence/order_store.hpp"
#include "persistence/pg.hpp"
#include "persistence/product_store.hpp"
#include "support/eventually.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

using namespace emporium;
using namespace std::chrono_literals;
namespace ps = emporium::persistence::product_store;
using actors::runtime;

namespace {

using clock_type = std::chrono::steady_clock;

persistence::pg_options pg_opts() {
  return persistence::pg_options{test::pg_url(), 2'000, 20'000};
}

void ensure_schema() {
  static std::once_flag once;
  std::call_once(once, [] {
    persistence::pg_session s{pg_opts()};
    persistence::migrate(s);
  });
}

model::product_draft make_draft(std::int64_t stock) {
  model::product_draft d;
  d.sku = test::unique("MONEY");
  d.name = "Money Teapot " + d.sku;
  d.description = "Holds tea in integration tests";
  d.price_cents = 1500;
  d.currency = "USD";
  d.category = "moneytest";
  d.stock = stock;
  d.weight_grams = 100;
  return d;
}

} // namespace

// -- lost answers
// ----------------------------------------------------------------------------------

namespace {

std::int64_t stock_in_postgres(const std::string& id) {
  persistence::pg_session s{pg_opts()};
  pqxx::read_transaction tx{s.connection()};
  return tx.exec_params("SELECT stock FROM products WHERE id = $1", id).at(0)[0].as<std::int64_t>();
}

template <class T>
result<T> wait(std::future<result<T>>& f, std::chrono::milliseconds limit = 15s) {
  if (f.wait_for(limit) != std::future_status::ready)
    FAIL("the runtime did not answer within " << limit.count() << " ms");
  return f.get();
}

/// Calls `start(callback)` on the runtime and waits for the answer.
template <class T, class Start>
result<T> call(Start start, std::chrono::milliseconds limit = 15s) {
  auto promise = std::make_shared<std::promise<result<T>>>();
  auto once = std::make_shared<std::once_flag>();
  auto future = promise->get_future();
  start([promise, once](result<T> r) {
    std::call_once(*once, [&] { promise->set_value(std::move(r)); });
  });
  return wait(future, limit);
}

using emporium::test::eventually;

/// Makes every insert of an outbox event of the listed entities sleep `ms` in PostgreSQL, so
/// that a transaction touching several of them outlasts the job's deadline while no statement
/// reaches the statement timeout: the commit then happens after its answer was given up.
class slow_events {
 public:
  explicit slow_events(int ms) : session_(pg_opts()) {
    pqxx::work tx{session_.connection()};
    tx.exec(
      "CREATE TABLE IF NOT EXISTS test_slow_entities (entity text PRIMARY KEY, "
      "sleep_ms int NOT NULL)");
    tx.exec(R"sql(
CREATE OR REPLACE FUNCTION test_slow_event() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  ms int;
BEGIN
  SELECT sleep_ms INTO ms FROM test_slow_entities WHERE entity = NEW.entity;
  IF ms IS NOT NULL THEN
    PERFORM pg_sleep(ms / 1000.0);
  END IF;
  RETURN NEW;
END
$fn$)sql");
    tx.exec("DROP TRIGGER IF EXISTS test_slow_event ON events");
    tx.exec(
      "CREATE TRIGGER test_slow_event BEFORE INSERT ON events FOR EACH ROW "
      "EXECUTE FUNCTION test_slow_event()");
    tx.commit();
    ms_ = ms;
  }
  ~slow_events() {
    try {
      pqxx::work tx{session_.connection()};
      tx.exec("DROP TRIGGER IF EXISTS test_slow_event ON events");
      tx.exec("DELETE FROM test_slow_entities");
      tx.commit();
    } catch (const std::exception& e) {
      WARN("could not drop the slow-event trigger: " << e.what());
    }
  }
  void slow_down(const std::string& product_id) {
    pqxx::work tx{session_.connection()};
    tx.exec_params(
      "INSERT INTO test_slow_entities (entity, sleep_ms) VALUES ($1, $2) "
      "ON CONFLICT (entity) DO UPDATE SET sleep_ms = excluded.sleep_ms",
      "product:" + product_id, ms_);
    tx.commit();
  }

 private:
  persistence::pg_session session_;
  int ms_ = 0;
};

model::address us_address() {
  model::address a;
  a.name = "Ann";
  a.line1 = "1 Main St";
  a.city = "Springfield";
  a.postal_code = "12345";
  a.country = "US";
  return a;
}

struct shop {
  runtime rt;
  model::principal customer;
  std::vector<model::product> products;

  explicit shop(const config::settings& s) : rt(s) {
    model::customer_draft d{test::unique("money") + "@example.com", "Money Tester",
                            "correct horse battery staple"};
    auto c = call<model::customer>([&](auto cb) { rt.create_customer(d, cb); });
    if (!c)
      FAIL("create customer: " << c.error().detail);
    customer = model::principal{false, c->id};
    for (int i = 0; i < 3; ++i) {
      auto p = call<model::product>([&](auto cb) { rt.create_product(make_draft(20), cb); });
      if (!p)
        FAIL("create product: " << p.error().detail);
      products.push_back(*p);
    }
  }

  std::int64_t stock_in_memory(const std::string& id) {
    auto p = call<model::product>([&](auto cb) { rt.get_product(id, cb); });
    return p ? p->stock : -1;
  }

  /// Every product actor holds the stock PostgreSQL has.
  bool memory_matches_postgres() {
    for (const auto& p : products)
      if (stock_in_memory(p.id) != stock_in_postgres(p.id))
        return false;
    return true;
  }

  model::order_request request() const {
    model::order_request req;
    for (const auto& p : products)
      req.items.push_back({p.id, 2});
    req.shipping_address = us_address();
    return req;
  }
};

config::settings short_db_deadline() {
  ensure_schema();
  auto s = test::test_settings();
  // db_timeout is statement_timeout + 500 ms = 2.5 s; three slowed events take 3.6 s.
  s.postgres.statement_timeout_ms = 2'000;
  s.http.request_timeout_ms = 10'000;
  return s;
}

} // namespace

TEST_CASE(
  "lost answers: a placement that committed after the order gave up still reaches the "
  "products' memory",
  "[pg][runtime][money]") {
  shop sh{short_db_deadline()};
  // A placement is one statement, within the statement timeout. Its answer is given up when it
  // waited for another customer's placement before it: each of the two transactions lasts
  // 1.8 s (three slowed events), the second commits about 3.6 s after the first started, past
  // its 2.5 s deadline. Both commit: 2 + 2 units of each product.
  model::customer_draft d{test::unique("money") + "@example.com", "Money Tester",
                          "correct horse battery staple"};
  auto other = call<model::customer>([&](auto cb) { sh.rt.create_customer(d, cb); });
  REQUIRE(other);
  slow_events slow{600};
  for (const auto& p : sh.products) {
    REQUIRE(sh.stock_in_memory(p.id) == 20);
    slow.slow_down(p.id);
  }
  auto first = std::make_shared<std::promise<result<model::order_outcome>>>();
  auto first_answer = first->get_future();
  sh.rt.place_order(model::principal{false, other->id}, sh.request(),
                    [first](result<model::order_outcome> r) { first->set_value(std::move(r)); });
  // The second placement starts once the first one's statement runs.
  REQUIRE(eventually(
    [] {
      persistence::pg_session s{pg_opts()};
      pqxx::read_transaction tx{s.connection()};
      return tx.exec(
                 "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query "
                 "LIKE 'SELECT emporium_place_orders%'")
               .at(0)[0]
               .as<int>()
             > 0;
    },
    10s));
  auto placed = call<model::order_outcome>(
    [&](auto cb) { sh.rt.place_order(sh.customer, sh.request(), cb); }, 20s);
  REQUIRE_FALSE(placed);   // the answer was given up...
  wait(first_answer, 20s); // placed, or given up too on a slow machine: it commits either way
  // ...but the transaction committed after all.
  REQUIRE(eventually([&] { return stock_in_postgres(sh.products.front().id) == 16; }, 10s));
  CHECK(eventually([&] { return sh.memory_matches_postgres(); }, 10s));
  for (const auto& p : sh.products)
    CHECK(sh.stock_in_memory(p.id) == 16);
}

TEST_CASE(
  "lost answers: a cancellation that committed after the order gave up still reaches "
  "the products' memory",
  "[pg][runtime][money]") {
  shop sh{short_db_deadline()};
  auto placed = call<model::order_outcome>(
    [&](auto cb) { sh.rt.place_order(sh.customer, sh.request(), cb); });
  REQUIRE(placed);
  auto order_id = placed->placed.id;
  for (const auto& p : sh.products)
    REQUIRE(sh.stock_in_memory(p.id) == 18);

  slow_events slow{1'200};
  for (const auto& p : sh.products)
    slow.slow_down(p.id);
  auto cancelled = call<model::order>(
    [&](auto cb) { sh.rt.cancel_order(sh.customer, order_id, cb); }, 20s);
  REQUIRE_FALSE(cancelled);
  REQUIRE(eventually([&] { return stock_in_postgres(sh.products.front().id) == 20; }, 10s));
  CHECK(eventually([&] { return sh.memory_matches_postgres(); }, 10s));
  for (const auto& p : sh.products)
    CHECK(sh.stock_in_memory(p.id) == 20);
}

TEST_CASE(
  "stock changed behind the products' back: the placement PostgreSQL refuses brings their "
  "memory back to what PostgreSQL has",
  "[pg][runtime][money]") {
  ensure_schema();
  shop sh{test::test_settings()};
  const auto& short_one = sh.products.front();
  REQUIRE(sh.stock_in_memory(short_one.id) == 20);
  {
    // Another writer (an operator's SQL, a node that lost its lease) took most of it.
    persistence::pg_session s{pg_opts()};
    pqxx::work tx{s.connection()};
    tx.exec_params("UPDATE products SET stock = 1, version = version + 1 WHERE id = $1",
                   short_one.id);
    tx.commit();
  }
  // Its actor still holds 20: the hold passes, PostgreSQL refuses the order.
  auto refused = call<model::order_outcome>(
    [&](auto cb) { sh.rt.place_order(sh.customer, sh.request(), cb); });
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::out_of_stock);
  CHECK(eventually([&] { return sh.stock_in_memory(short_one.id) == 1; }, 10s));
  CHECK(sh.memory_matches_postgres());
  // The next order is refused by the product itself, without a placement.
  auto again = call<model::order_outcome>(
    [&](auto cb) { sh.rt.place_order(sh.customer, sh.request(), cb); });
  REQUIRE_FALSE(again);
  CHECK(again.error().code == errc::out_of_stock);
  CHECK(stock_in_postgres(short_one.id) == 1);
}

TEST_CASE(
  "idempotency: a retry while the first placement under its key may still commit is told so "
  "(409), not refused for the stock that placement holds, and later gets that order",
  "[pg][runtime][money]") {
  ensure_schema();
  auto s = test::test_settings();
  s.http.request_timeout_ms = 2'000;       // the customer waits 1.6 s for its order
  s.postgres.statement_timeout_ms = 4'000; // the placement may take 4.5 s
  shop sh{s};
  auto last_two = call<model::product>([&](auto cb) { sh.rt.create_product(make_draft(2), cb); });
  REQUIRE(last_two);
  slow_events slow{2'500}; // the placement's one product event: past the customer's wait
  slow.slow_down(last_two->id);
  model::order_request req;
  req.items = {{last_two->id, 2}};
  req.shipping_address = us_address();
  req.idempotency_key = test::unique("idem-slow");
  req.request_hash = "the same body";
  auto place = [&] {
    return call<model::order_outcome>([&](auto cb) { sh.rt.place_order(sh.customer, req, cb); },
                                      20s);
  };

  auto first = place();
  REQUIRE_FALSE(first); // given up; the placement goes on
  auto retry = place();
  REQUIRE_FALSE(retry);
  INFO(retry.error().detail);
  CHECK(retry.error().code == errc::conflict);
  CHECK(retry.error().detail.find("still being placed") != std::string::npos);

  REQUIRE(eventually([&] { return stock_in_postgres(last_two->id) == 0; }, 10s));
  auto later = place();
  REQUIRE(later);
  CHECK(later->replayed);
  CHECK(later->placed.lines.at(0).quantity == 2);
}
