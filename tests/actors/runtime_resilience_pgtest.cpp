// Integration tests of the actor runtime through its public facade, against the real PostgreSQL and
// Redis of the test environment: supervision and passivation of entity actors, Redis and PostgreSQL
// down or hanging, concurrent writers and a slow database. Callbacks run on actor threads: every
// call here waits for its answer on a future with a deadline and fails the test on timeout, and no
// Catch2 assertion is ever made from inside a callback.

#include "actors/runtime_support.hpp"

#include "actors/runtime.hpp"
#include "core/ids.hpp"
#include "persistence/cache.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg.hpp"
#include "persistence/product_store.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace emporium;
using namespace std::chrono_literals;
namespace ps = emporium::persistence::product_store;
using actors::runtime;
using namespace emporium::test::runtime_pg;

// -- supervision and passivation ----------------------------------------------------------------

TEST_CASE("runtime: a crashed product actor costs one request and re-activates with its state",
          "[pg][runtime][supervision]") {
  runtime rt{settings()};
  auto created = create_ok(rt);
  auto updated = update(rt, created.id, price_patch(4242));
  REQUIRE(updated);
  auto before = rt.stats().products;

  auto r = crash(rt, created.id);
  CHECK_FALSE(r);
  if (!r)
    CHECK(r.error().code != errc::none);
  CHECK(eventually([&] { return rt.stats().products.crashes > before.crashes; }));
  CHECK(rt.stats().products.crashes == before.crashes + 1);

  check_same(get_ok(rt, created.id), updated.value());
  auto after = rt.stats().products;
  CHECK(after.activations > before.activations);
  CHECK(after.active >= 1);

  // Writes work on the new activation too.
  auto again = update(rt, created.id, price_patch(4343), updated->version);
  REQUIRE(again);
  CHECK(again->version == updated->version + 1);
}

TEST_CASE("runtime: an idle product actor is passivated and re-activated from storage",
          "[pg][runtime][passivation]") {
  auto s = settings();
  s.actors.idle_timeout_s = 1;
  runtime rt{s};
  auto created = create_ok(rt);
  auto before = rt.stats().products;
  CHECK(before.active >= 1);
  check_same(get_ok(rt, created.id), created);
  auto active = rt.stats().products.active;
  CHECK(active >= 1);

  std::this_thread::sleep_for(2500ms);
  auto idle = rt.stats().products;
  CHECK(idle.passivations > before.passivations);
  CHECK(idle.active < active);
  CHECK(idle.crashes == before.crashes);

  check_same(get_ok(rt, created.id), created);
  auto after = rt.stats().products;
  CHECK(after.activations > idle.activations);
  CHECK(after.active >= 1);

  // A write on the re-activated entity, then another passivation and read from storage.
  auto u = update(rt, created.id, price_patch(1234), created.version);
  REQUIRE(u);
  std::this_thread::sleep_for(2500ms);
  CHECK(rt.stats().products.passivations > idle.passivations);
  check_same(get_ok(rt, created.id), u.value());
}

TEST_CASE("runtime: requests arriving around passivation are all answered",
          "[pg][runtime][passivation]") {
  auto s = settings();
  s.actors.idle_timeout_s = 1;
  runtime rt{s};
  auto created = create_ok(rt);
  auto before = rt.stats().products;
  // Gaps around the idle timeout (1 s, swept every 250 ms): requests meet a live actor, one
  // told to stop whose down message has not arrived yet (held back by the manager), or none.
  // Each must be answered, with the right state, exactly once.
  const int gaps_ms[] = {950, 1000, 1050, 1100, 1150, 1200, 1250, 1300, 1400, 1500};
  int asked = 0;
  for (int gap : gaps_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(gap));
    // Two at once, so that one may be held while the other triggers the re-activation.
    pending<model::product> a, b;
    rt.get_product(created.id, a.callback());
    rt.get_product(created.id, b.callback());
    for (auto* p : {&a, &b}) {
      auto r = p->wait();
      ++asked;
      if (!r) {
        FAIL_CHECK("get after " << gap << " ms idle failed: " << describe(r.error()));
        continue;
      }
      CHECK(r->version == created.version);
      CHECK(r->price_cents == created.price_cents);
    }
  }
  CHECK(asked == 20);
  auto after = rt.stats().products;
  CHECK(after.passivations > before.passivations);
  CHECK(after.activations > before.activations);
  CHECK(after.crashes == before.crashes);
  CHECK(after.active <= 1);
}

TEST_CASE("runtime: shutdown with active entities does not wait for their database deadlines",
          "[pg][runtime]") {
  auto s = settings();
  // A long statement timeout makes the entities' database deadline (statement timeout + 500 ms)
  // far longer than a shutdown that stops them: waiting for it would be unmistakable.
  s.postgres.statement_timeout_ms = 30'000;
  runtime rt{s};
  auto created = create_ok(rt);
  get_ok(rt, created.id);
  auto t0 = clock_type::now();
  rt.shutdown();
  auto took = seconds_since(t0);
  // shutdown() must stop the entity actors too, not only the managers and db workers:
  // an entity left to end by itself ends when its last strong reference goes, and CAF's
  // pending request-timeout timers hold one until they fire, the db_timeout of the entity's
  // last database request (30.5 s here).
  INFO("shutdown took " << took << " s");
  CHECK(took < s.postgres.statement_timeout_ms / 1000.0);
}

// -- failures of the services -------------------------------------------------------------------

TEST_CASE("runtime: with Redis down, create, get and update work from PostgreSQL",
          "[pg][runtime][faults]") {
  auto s = settings();
  s.redis.url = "redis://127.0.0.1:1/0"; // nothing listens there
  model::product updated;
  {
    runtime rt{s};
    // Each call is answered within the runtime's request deadline (a late one fails as a
    // timeout, which create_ok and get_ok reject).
    auto created = create_ok(rt);
    check_same(get_ok(rt, created.id), created);
    auto r = update(rt, created.id, price_patch(8888), created.version);
    REQUIRE(r);
    updated = r.value();
    CHECK(updated.price_cents == 8888);
    check_same(get_ok(rt, created.id), updated);
    auto ok = ready(rt);
    REQUIRE(ok);
    CHECK(ok.value());
  }
  {
    runtime rt{s}; // a fresh activation, again without Redis
    check_same(get_ok(rt, updated.id), updated);
  }
  // Nothing of it reached the real Redis.
  CHECK_FALSE(redis_value(old_product_key(updated.id)));
}

TEST_CASE("runtime: with Redis hanging, requests still work well inside the deadline",
          "[pg][runtime][faults]") {
  silent_listener hung; // accepts connections, never answers a command
  auto s = settings();
  s.redis.url = "redis://127.0.0.1:" + std::to_string(hung.port) + "/0";
  s.redis.timeout_ms = 200;
  runtime rt{s};
  // Each call is answered within the runtime's request deadline (a late one fails as a timeout,
  // which create_ok and get_ok reject): a Redis call costs at most its 200 ms timeout, then
  // the client backs off.
  auto created = create_ok(rt);
  check_same(get_ok(rt, created.id), created);
  auto r = update(rt, created.id, price_patch(2222), created.version);
  REQUIRE(r);
  CHECK(r->price_cents == 2222);
  auto second = create_ok(rt);
  check_same(get_ok(rt, second.id), second);
  check_same(get_ok(rt, created.id), r.value());
}

TEST_CASE(
  "runtime: a change made while Redis was unreachable is not hidden by the stale cached "
  "value once Redis is back",
  "[pg][runtime][faults]") {
  auto s = settings();
  model::product created;
  {
    runtime rt{s};
    created = create_ok(rt);
    get_ok(rt, created.id);
  }
  // A copy of version 1 where earlier versions of this program kept one: whatever Redis
  // holds, a fresh activation reads PostgreSQL.
  REQUIRE(redis_put(old_product_key(created.id), "{\"id\":\"" + created.id + "\",\"version\":1}"));
  model::product updated;
  {
    auto cut = s;
    cut.redis.url = "redis://127.0.0.1:1/0"; // this node cannot reach Redis for a while
    runtime rt{cut};
    auto r = update(rt, created.id, price_patch(6543), created.version);
    REQUIRE(r);
    updated = r.value();
  }
  {
    runtime rt{s}; // Redis reachable again; a fresh activation
    auto now = get_ok(rt, created.id);
    // A fresh activation reads PostgreSQL, never Redis: an update acknowledged while Redis
    // was unreachable cannot "disappear" (which would also make a PATCH with If-Match of the
    // real version fail 412).
    CHECK(now.version == updated.version);
    CHECK(now.price_cents == 6543);
  }
}

TEST_CASE("runtime: with PostgreSQL unreachable, requests fail fast and readiness fails",
          "[pg][runtime][faults]") {
  auto s = settings();
  s.postgres.url = "postgresql://emporium@127.0.0.1:1/x"; // nothing listens there
  s.postgres.connect_timeout_ms = 2'000;
  runtime rt{s};

  // Answered (within the 15 s the test waits), as a failure.
  auto r = get(rt, core::new_id("prod"), 15s);
  REQUIRE_FALSE(r);
  CHECK((r.error().code == errc::unavailable || r.error().code == errc::timeout));

  // Again, on the next activation: still a bounded failure, not a hang.
  auto again = get(rt, core::new_id("prod"), 15s);
  REQUIRE_FALSE(again);
  CHECK((again.error().code == errc::unavailable || again.error().code == errc::timeout));

  auto c = create(rt, make_draft(), 15s);
  REQUIRE_FALSE(c);
  CHECK((c.error().code == errc::unavailable || c.error().code == errc::timeout));

  auto rd = ready(rt, 15s);
  CHECK_FALSE(rd);
  if (!rd)
    CHECK((rd.error().code == errc::unavailable || rd.error().code == errc::timeout));

  model::product_query q;
  auto l = list(rt, q);
  REQUIRE_FALSE(l);
  CHECK((l.error().code == errc::unavailable || l.error().code == errc::timeout));
}

TEST_CASE("runtime: with PostgreSQL hanging, requests fail within the deadline",
          "[pg][runtime][faults]") {
  silent_listener hung;
  auto s = settings();
  s.postgres.url = "postgresql://emporium@127.0.0.1:" + std::to_string(hung.port) + "/x";
  s.postgres.connect_timeout_ms = 2'000;
  runtime rt{s};

  auto t0 = clock_type::now();
  auto r = get(rt, core::new_id("prod"), 15s);
  REQUIRE_FALSE(r);
  CHECK((r.error().code == errc::unavailable || r.error().code == errc::timeout));
  CHECK(seconds_since(t0) < 8.0); // the request deadline is 5 s

  t0 = clock_type::now();
  auto rd = ready(rt, 15s);
  CHECK_FALSE(rd);
  CHECK(seconds_since(t0) < 8.0);
}

// -- races and slow database ----------------------------------------------------------------------

TEST_CASE("runtime: concurrent creates with one sku: exactly one wins, the rest conflict",
          "[pg][runtime][concurrency]") {
  runtime rt{settings()};
  auto d = make_draft();
  constexpr int n = 8;
  std::vector<pending<model::product>> answers(n);
  for (int i = 0; i < n; ++i) {
    auto di = d;
    di.name = "racer " + std::to_string(i);
    rt.create_product(di, answers[i].callback());
  }
  int won = 0, conflicts = 0;
  std::string winner;
  for (auto& a : answers) {
    auto r = a.wait(15s);
    if (r) {
      ++won;
      winner = r->id;
    } else if (r.error().code == errc::conflict) {
      ++conflicts;
    } else {
      FAIL_CHECK("unexpected failure: " << describe(r.error()));
    }
  }
  CHECK(won == 1);
  CHECK(conflicts == n - 1);
  persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 5'000}};
  pqxx::nontransaction tx{s.connection()};
  auto rows = tx.exec_params("SELECT id FROM products WHERE sku = $1", d.sku);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0].as<std::string>() == winner);
}

TEST_CASE("runtime: concurrent updates with the same If-Match version: exactly one wins",
          "[pg][runtime][concurrency]") {
  runtime rt{settings()};
  auto created = create_ok(rt);
  constexpr int n = 10;
  std::vector<pending<model::product>> answers(n);
  for (int i = 0; i < n; ++i)
    rt.update_product(created.id, price_patch(10'000 + i), created.version, answers[i].callback());
  int won = 0, refused = 0;
  std::int64_t winning_price = -1;
  for (auto& a : answers) {
    auto r = a.wait(15s);
    if (r) {
      ++won;
      winning_price = r->price_cents;
      CHECK(r->version == created.version + 1);
    } else if (r.error().code == errc::precondition_failed) {
      ++refused;
    } else {
      FAIL_CHECK("unexpected failure: " << describe(r.error()));
    }
  }
  CHECK(won == 1);
  CHECK(refused == n - 1);
  auto now = get_ok(rt, created.id);
  CHECK(now.version == created.version + 1);
  CHECK(now.price_cents == winning_price);
}

TEST_CASE("runtime: a product activates from PostgreSQL whatever Redis holds under its old key",
          "[pg][runtime][cache]") {
  auto s = settings();
  model::product created;
  {
    runtime rt{s};
    created = create_ok(rt);
  }
  const std::string garbage = "{\"not\": \"a product\"";
  REQUIRE(redis_put(old_product_key(created.id), garbage));
  {
    runtime rt{s};
    check_same(get_ok(rt, created.id), created);
    auto r = update(rt, created.id, price_patch(1234), created.version);
    REQUIRE(r);
  }
  // Neither read nor written: the write costs no Redis round trip for the product.
  CHECK(redis_value(old_product_key(created.id)) == garbage);
}

TEST_CASE("runtime: a write waiting on a row lock completes once the lock is released",
          "[pg][runtime][slow-db]") {
  runtime rt{settings()};
  auto created = create_ok(rt);
  persistence::pg_session locker{persistence::pg_options{test::pg_url(), 2'000, 10'000}};
  auto tx = std::make_unique<pqxx::work>(locker.connection());
  tx->exec_params("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", created.id);

  pending<model::product> answer;
  rt.update_product(created.id, price_patch(3333), 0, answer.callback());
  std::this_thread::sleep_for(1500ms);
  CHECK(answer.calls() == 0); // blocked behind the lock, not answered with a guess
  tx->commit();
  tx.reset();
  auto r = answer.wait(10s);
  REQUIRE(r);
  CHECK(r->price_cents == 3333);
  CHECK(r->version == created.version + 1);
  check_same(get_ok(rt, created.id), r.value());
}

TEST_CASE("runtime: a write blocked past the deadline fails in bounded time and changes nothing",
          "[pg][runtime][slow-db]") {
  runtime rt{settings()};
  auto created = create_ok(rt);
  persistence::pg_session locker{persistence::pg_options{test::pg_url(), 2'000, 20'000}};
  auto tx = std::make_unique<pqxx::work>(locker.connection());
  tx->exec_params("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", created.id);

  auto t0 = clock_type::now();
  auto r = update(rt, created.id, price_patch(4444), 0, 15s);
  auto took = seconds_since(t0);
  REQUIRE_FALSE(r);
  CHECK((r.error().code == errc::timeout || r.error().code == errc::unavailable));
  CHECK(took < 8.0); // request deadline 5 s, statement timeout 5 s
  // Let the statement timeout cancel the UPDATE for sure before releasing the lock.
  std::this_thread::sleep_for(1500ms);
  tx->commit();
  tx.reset();

  auto row = from_postgres(created.id);
  REQUIRE(row);
  check_same(*row, created);
  check_same(get_ok(rt, created.id), created);
  auto next = update(rt, created.id, price_patch(4545), created.version);
  REQUIRE(next);
  CHECK(next->version == created.version + 1);
  CHECK(next->price_cents == 4545);
}
