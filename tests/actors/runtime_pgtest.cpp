// Integration tests of the actor runtime through its public facade (actors/runtime.hpp), against
// the real PostgreSQL and Redis of the test environment. Callbacks run on actor threads: every
// call here waits for its answer on a future with a deadline and fails the test on timeout, and
// no Catch2 assertion is ever made from inside a callback.

#include "actors/runtime.hpp"
#include "persistence/cache.hpp"
#include "persistence/ids.hpp"
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

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Brings the schema up to date once per process (the CI database starts empty).
void ensure_schema() {
  static std::once_flag once;
  std::call_once(once, [] {
    persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 5'000}};
    persistence::migrate(s);
  });
}

config::settings settings() {
  ensure_schema();
  return test::test_settings();
}

/// A pending answer: the callback to hand to the runtime, and a wait with a deadline.
template <class T>
class pending {
 public:
  pending() : state_(std::make_shared<shared>()), future_(state_->promise.get_future()) {}

  /// Safe to call late (after the test gave up) and more than once (the first answer wins).
  actors::callback<T> callback() const {
    return [st = state_](result<T> r) {
      if (st->calls.fetch_add(1) == 0)
        st->promise.set_value(std::move(r));
    };
  }

  /// The answer, or a failed test when none came within `limit`.
  result<T> wait(std::chrono::milliseconds limit = 10s) {
    if (future_.wait_for(limit) != std::future_status::ready)
      FAIL("the runtime did not answer within " << limit.count() << " ms");
    return future_.get();
  }

  int calls() const { return state_->calls.load(); }

 private:
  struct shared {
    std::promise<result<T>> promise;
    std::atomic<int> calls{0};
  };
  std::shared_ptr<shared> state_;
  std::future<result<T>> future_;
};

result<model::product> get(runtime& rt, const std::string& id,
                           std::chrono::milliseconds limit = 10s) {
  pending<model::product> p;
  rt.get_product(id, p.callback());
  return p.wait(limit);
}

result<model::product> create(runtime& rt, const model::product_draft& d,
                              std::chrono::milliseconds limit = 10s) {
  pending<model::product> p;
  rt.create_product(d, p.callback());
  return p.wait(limit);
}

result<model::product> update(runtime& rt, const std::string& id, const model::product_patch& patch,
                              std::int64_t expected_version = 0,
                              std::chrono::milliseconds limit = 10s) {
  pending<model::product> p;
  rt.update_product(id, patch, expected_version, p.callback());
  return p.wait(limit);
}

result<model::product_page> list(runtime& rt, const model::product_query& q) {
  pending<model::product_page> p;
  rt.list_products(q, p.callback());
  return p.wait();
}

result<bool> ready(runtime& rt, std::chrono::milliseconds limit = 10s) {
  pending<bool> p;
  rt.check_ready(p.callback());
  return p.wait(limit);
}

result<bool> crash(runtime& rt, const std::string& id) {
  pending<bool> p;
  rt.crash_product(id, p.callback());
  return p.wait();
}

/// Polls `pred` until it holds or `limit` passed; answers whether it held.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5s) {
  auto until = clock_type::now() + limit;
  while (!pred()) {
    if (clock_type::now() > until)
      return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

std::string describe(const failure& f) {
  return "errc(" + std::to_string(static_cast<int>(f.code)) + ") " + f.detail;
}

model::product_draft make_draft(const std::string& category = "pgtest") {
  model::product_draft d;
  d.sku = test::unique("RT");
  d.name = "Runtime Kettle " + d.sku;
  d.description = "Boils water in integration tests";
  d.price_cents = 1999;
  d.currency = "EUR";
  d.category = category;
  d.stock = 10;
  d.weight_grams = 900;
  d.images = {"https://images.example.com/kettle.jpg"};
  return d;
}

void check_same(const model::product& a, const model::product& b) {
  CHECK(a.id == b.id);
  CHECK(a.sku == b.sku);
  CHECK(a.name == b.name);
  CHECK(a.description == b.description);
  CHECK(a.price_cents == b.price_cents);
  CHECK(a.currency == b.currency);
  CHECK(a.category == b.category);
  CHECK(a.stock == b.stock);
  CHECK(a.weight_grams == b.weight_grams);
  CHECK(a.images == b.images);
  CHECK(a.version == b.version);
  CHECK(a.created_at_ms == b.created_at_ms);
  CHECK(a.updated_at_ms == b.updated_at_ms);
}

/// Creates a product and fails the test unless that worked.
model::product create_ok(runtime& rt, const model::product_draft& d = make_draft()) {
  auto r = create(rt, d);
  if (!r)
    FAIL("create failed: " << describe(r.error()));
  return r.value();
}

model::product get_ok(runtime& rt, const std::string& id) {
  auto r = get(rt, id);
  if (!r)
    FAIL("get " << id << " failed: " << describe(r.error()));
  return r.value();
}

std::optional<model::product> from_postgres(const std::string& id) {
  persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 5'000}};
  pqxx::read_transaction tx{s.connection()};
  auto p = ps::find(tx, id);
  tx.commit();
  return p;
}

std::optional<model::product> from_redis(const std::string& id) {
  persistence::redis_cache c{persistence::redis_options{test::redis_url(), 1'000}};
  auto text = c.get(ps::cache_key(id));
  if (!text)
    return std::nullopt;
  return ps::decode(*text);
}

bool drop_from_redis(const std::string& id) {
  persistence::redis_cache c{persistence::redis_options{test::redis_url(), 1'000}};
  return c.del(ps::cache_key(id));
}

model::product_patch price_patch(std::int64_t cents) {
  model::product_patch p;
  p.price_cents = cents;
  return p;
}

/// A TCP port that accepts connections (into the kernel's backlog) but never answers.
struct silent_listener {
  int fd = -1;
  int port = 0;
  silent_listener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd, 64) == 0);
    socklen_t len = sizeof(addr);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }
  ~silent_listener() {
    if (fd >= 0)
      ::close(fd);
  }
};

} // namespace

// -- basics ---------------------------------------------------------------------------------------

TEST_CASE("runtime: a created product is read back, also after a restart", "[pg][runtime]") {
  auto s = settings();
  model::product created;
  auto d = make_draft();
  {
    runtime rt{s};
    created = create_ok(rt, d);
    CHECK(persistence::is_valid_id(created.id, "prod"));
    CHECK(created.sku == d.sku);
    CHECK(created.name == d.name);
    CHECK(created.description == d.description);
    CHECK(created.price_cents == d.price_cents);
    CHECK(created.currency == d.currency);
    CHECK(created.category == d.category);
    CHECK(created.stock == d.stock);
    CHECK(created.weight_grams == d.weight_grams);
    CHECK(created.images == d.images);
    CHECK(created.version == 1);
    CHECK(created.created_at_ms > 0);

    check_same(get_ok(rt, created.id), created);

    // Acknowledged means durable: the row is in PostgreSQL already.
    auto row = from_postgres(created.id);
    REQUIRE(row);
    check_same(*row, created);
    rt.shutdown();
    rt.shutdown(); // idempotent
  }
  {
    runtime rt{s};
    check_same(get_ok(rt, created.id), created);
  }
}

TEST_CASE("runtime: check_ready answers true with PostgreSQL up", "[pg][runtime]") {
  runtime rt{settings()};
  auto r = ready(rt);
  REQUIRE(r);
  CHECK(r.value() == true);
  CHECK(rt.stats().db_size == 2);
}

TEST_CASE("runtime: an unknown id is not found, and creating afterwards works", "[pg][runtime]") {
  runtime rt{settings()};
  auto unknown = persistence::new_id("prod");
  auto r = get(rt, unknown);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::not_found);
  // Asked again (the activation now holds "nothing"), still not found.
  auto again = get(rt, unknown);
  REQUIRE_FALSE(again);
  CHECK(again.error().code == errc::not_found);
  // Updating what does not exist is not found either, and creates nothing.
  auto u = update(rt, unknown, price_patch(100));
  REQUIRE_FALSE(u);
  CHECK(u.error().code == errc::not_found);
  CHECK_FALSE(from_postgres(unknown));

  auto created = create_ok(rt);
  CHECK(created.id != unknown);
  check_same(get_ok(rt, created.id), created);
}

TEST_CASE("runtime: create validates the draft and enforces a unique sku", "[pg][runtime]") {
  runtime rt{settings()};
  auto d = make_draft();
  d.currency = "eur";
  d.stock = -1;
  auto bad = create(rt, d);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == errc::invalid_input);
  auto names = [&bad](const std::string& field) {
    return std::any_of(bad.error().errors.begin(), bad.error().errors.end(),
                       [&](const field_error& e) { return e.field == field; });
  };
  CHECK(names("currency"));
  CHECK(names("stock"));

  auto first = create_ok(rt);
  auto dup = make_draft();
  dup.sku = first.sku;
  auto second = create(rt, dup);
  REQUIRE_FALSE(second);
  CHECK(second.error().code == errc::conflict);
  check_same(get_ok(rt, first.id), first);
}

TEST_CASE("runtime: list_products pages by id with a next cursor", "[pg][runtime]") {
  runtime rt{settings()};
  auto category = test::unique("rtcat");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(create_ok(rt, make_draft(category)).id);
  std::sort(ids.begin(), ids.end());

  model::product_query q;
  q.category = category;
  q.limit = 2;
  auto first = list(rt, q);
  REQUIRE(first);
  REQUIRE(first->items.size() == 2);
  CHECK(first->items[0].id == ids[0]);
  CHECK(first->items[1].id == ids[1]);
  REQUIRE(first->next_after_id);
  CHECK(*first->next_after_id == ids[1]);

  q.after_id = first->next_after_id;
  auto second = list(rt, q);
  REQUIRE(second);
  REQUIRE(second->items.size() == 1);
  CHECK(second->items[0].id == ids[2]);
  CHECK_FALSE(second->next_after_id);

  // The listed product is the stored one.
  check_same(second->items[0], get_ok(rt, ids[2]));

  // Without a category: a page of the whole catalog, in id order.
  model::product_query all;
  all.limit = 2;
  auto any = list(rt, all);
  REQUIRE(any);
  REQUIRE(any->items.size() == 2);
  CHECK(any->items[0].id < any->items[1].id);
  REQUIRE(any->next_after_id);
  CHECK(*any->next_after_id == any->items[1].id);
}

// -- writes and the cache ---------------------------------------------------------------------

TEST_CASE("runtime: an update is visible at once, in Redis, and to fresh activations",
          "[pg][runtime][cache]") {
  auto s = settings();
  model::product created, updated;
  {
    runtime rt{s};
    created = create_ok(rt);
    get_ok(rt, created.id); // active, and in Redis
    auto cached = from_redis(created.id);
    REQUIRE(cached);
    CHECK(cached->price_cents == created.price_cents);

    auto r = update(rt, created.id, price_patch(2499));
    if (!r)
      FAIL("update failed: " << describe(r.error()));
    updated = r.value();
    CHECK(updated.price_cents == 2499);
    CHECK(updated.version == created.version + 1);
    CHECK(updated.name == created.name);
    CHECK(updated.stock == created.stock);
    CHECK(updated.created_at_ms == created.created_at_ms);
    CHECK(updated.updated_at_ms >= created.updated_at_ms);

    check_same(get_ok(rt, created.id), updated);
  }
  // Redis holds the new value, not the old one.
  auto cached = from_redis(created.id);
  REQUIRE(cached);
  check_same(*cached, updated);
  // PostgreSQL too.
  auto row = from_postgres(created.id);
  REQUIRE(row);
  check_same(*row, updated);

  SECTION("a fresh runtime loads the new value through Redis") {
    runtime rt{s};
    check_same(get_ok(rt, created.id), updated);
  }

  SECTION("without the Redis key, a fresh runtime loads it from PostgreSQL and refills Redis") {
    REQUIRE(drop_from_redis(created.id));
    REQUIRE_FALSE(from_redis(created.id));
    runtime rt{s};
    check_same(get_ok(rt, created.id), updated);
    auto refilled = from_redis(created.id);
    REQUIRE(refilled);
    check_same(*refilled, updated);
  }
}

TEST_CASE("runtime: an update with a stale expected version fails and changes nothing",
          "[pg][runtime]") {
  runtime rt{settings()};
  auto created = create_ok(rt);
  REQUIRE(created.version == 1);

  auto first = update(rt, created.id, price_patch(3000), 1); // If-Match: the current version
  REQUIRE(first);
  CHECK(first->version == 2);
  CHECK(first->price_cents == 3000);

  auto stale = update(rt, created.id, price_patch(1), 1);
  REQUIRE_FALSE(stale);
  CHECK(stale.error().code == errc::precondition_failed);

  auto ahead = update(rt, created.id, price_patch(1), 7);
  REQUIRE_FALSE(ahead);
  CHECK(ahead.error().code == errc::precondition_failed);

  check_same(get_ok(rt, created.id), first.value());
  auto row = from_postgres(created.id);
  REQUIRE(row);
  check_same(*row, first.value());

  // The right version still goes through afterwards.
  auto second = update(rt, created.id, price_patch(3100), 2);
  REQUIRE(second);
  CHECK(second->version == 3);
  CHECK(second->price_cents == 3100);
}

TEST_CASE("runtime: an invalid patch is rejected and changes nothing", "[pg][runtime]") {
  runtime rt{settings()};
  auto created = create_ok(rt);
  model::product_patch patch;
  patch.stock = -3;
  auto r = update(rt, created.id, patch);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::invalid_input);
  REQUIRE_FALSE(r.error().errors.empty());
  CHECK(r.error().errors.front().field == "stock");
  check_same(get_ok(rt, created.id), created);
}

TEST_CASE("runtime: a patch taking another product's sku answers conflict and changes nothing",
          "[pg][runtime]") {
  runtime rt{settings()};
  auto a = create_ok(rt);
  auto b = create_ok(rt);
  model::product_patch patch;
  patch.sku = a.sku;
  patch.name = "renamed";
  auto r = update(rt, b.id, patch);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::conflict);
  // The actor reloaded after the failed write: it serves what PostgreSQL holds.
  check_same(get_ok(rt, b.id), b);
  auto row = from_postgres(b.id);
  REQUIRE(row);
  check_same(*row, b);
  // And accepts the next valid write on the version it really has.
  auto ok = update(rt, b.id, price_patch(777), b.version);
  REQUIRE(ok);
  CHECK(ok->version == b.version + 1);
  CHECK(ok->sku == b.sku);
}

TEST_CASE("runtime: a conditional write that lost to a change behind the actor's back answers "
          "conflict, then the actor serves the database's state",
          "[pg][runtime]") {
  runtime rt{settings()};
  auto created = create_ok(rt);
  get_ok(rt, created.id);
  auto change_behind_its_back = [&](std::int64_t stock) {
    // Another node (or an order's transaction) changed the row meanwhile.
    persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 5'000}};
    pqxx::work tx{s.connection()};
    tx.exec_params("UPDATE products SET stock = $2, version = version + 1 WHERE id = $1",
                   created.id, stock);
    tx.commit();
  };
  change_behind_its_back(99);
  // With If-Match on the version the actor knew: the row is not at that version any more.
  auto r = update(rt, created.id, price_patch(5555), created.version);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::conflict);
  auto now = get_ok(rt, created.id);
  CHECK(now.version == created.version + 1);
  CHECK(now.stock == 99);
  CHECK(now.price_cents == created.price_cents);
  auto retried = update(rt, created.id, price_patch(5555), now.version);
  REQUIRE(retried);
  CHECK(retried->version == created.version + 2);
  CHECK(retried->stock == 99);
  CHECK(retried->price_cents == 5555);
}

TEST_CASE("runtime: an unconditional write is applied to the row as it is now, keeping a change "
          "made behind the actor's back",
          "[pg][runtime]") {
  runtime rt{settings()};
  auto created = create_ok(rt);
  get_ok(rt, created.id);
  {
    persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 5'000}};
    pqxx::work tx{s.connection()};
    tx.exec_params("UPDATE products SET stock = 77, version = version + 1 WHERE id = $1",
                   created.id);
    tx.commit();
  }
  auto r = update(rt, created.id, price_patch(4444));
  REQUIRE(r);
  CHECK(r->version == created.version + 2);
  CHECK(r->stock == 77); // the other writer's stock survives
  CHECK(r->price_cents == 4444);
  auto now = get_ok(rt, created.id);
  CHECK(now.version == r->version);
  CHECK(now.stock == 77);
}

TEST_CASE("runtime: 50 concurrent updates of one product are all applied, one after the other",
          "[pg][runtime][concurrency]") {
  runtime rt{settings()};
  auto created = create_ok(rt);
  constexpr int n = 50;
  std::vector<pending<model::product>> answers(n);
  for (int i = 0; i < n; ++i) {
    model::product_patch patch;
    patch.stock = 1'000 + i;
    rt.update_product(created.id, patch, 0, answers[i].callback());
  }
  std::vector<model::product> results;
  for (int i = 0; i < n; ++i) {
    auto r = answers[i].wait(15s);
    if (!r) {
      FAIL_CHECK("update " << i << " failed: " << describe(r.error()));
      continue;
    }
    CHECK(r->stock == 1'000 + i); // each answer shows its own write
    results.push_back(r.value());
  }
  REQUIRE(results.size() == static_cast<std::size_t>(n));
  std::vector<std::int64_t> versions;
  for (const auto& p : results)
    versions.push_back(p.version);
  std::sort(versions.begin(), versions.end());
  for (int i = 0; i < n; ++i)
    CHECK(versions[i] == created.version + 1 + i); // distinct, no gaps
  auto last = *std::max_element(results.begin(), results.end(),
                                [](const auto& a, const auto& b) { return a.version < b.version; });
  auto final_state = get_ok(rt, created.id);
  CHECK(final_state.version == created.version + n);
  CHECK(final_state.stock == last.stock);
  auto row = from_postgres(created.id);
  REQUIRE(row);
  CHECK(row->version == created.version + n);
  CHECK(row->stock == last.stock);
  auto cached = from_redis(created.id);
  REQUIRE(cached);
  CHECK(cached->version == created.version + n);
  CHECK(cached->stock == last.stock);
}

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

TEST_CASE("runtime: shutdown with active entities returns promptly",
          "[pg][runtime]") {
  auto s = settings();
  runtime rt{s};
  auto created = create_ok(rt);
  get_ok(rt, created.id);
  auto t0 = clock_type::now();
  rt.shutdown();
  auto took = seconds_since(t0);
  // shutdown() must stop the entity actors too, not only the managers, bridges and db workers:
  // an entity left to end by itself ends when its last strong reference goes, and CAF's
  // pending request-timeout timers hold one until they fire, the db_timeout
  // (postgres.statement_timeout_ms + 500 ms = 5.5 s) of the entity's last database request.
  CHECK(took < 2.0);
}

// -- failures of the services -------------------------------------------------------------------

TEST_CASE("runtime: with Redis down, create, get and update work from PostgreSQL",
          "[pg][runtime][faults]") {
  auto s = settings();
  s.redis.url = "redis://127.0.0.1:1/0"; // nothing listens there
  model::product updated;
  {
    runtime rt{s};
    auto t0 = clock_type::now();
    auto created = create_ok(rt);
    check_same(get_ok(rt, created.id), created);
    auto r = update(rt, created.id, price_patch(8888), created.version);
    REQUIRE(r);
    updated = r.value();
    CHECK(updated.price_cents == 8888);
    check_same(get_ok(rt, created.id), updated);
    CHECK(seconds_since(t0) < 5.0);
    auto ok = ready(rt);
    REQUIRE(ok);
    CHECK(ok.value());
  }
  {
    runtime rt{s}; // a fresh activation, again without Redis
    check_same(get_ok(rt, updated.id), updated);
  }
  // Nothing of it reached the real Redis.
  CHECK_FALSE(from_redis(updated.id));
}

TEST_CASE("runtime: with Redis hanging, requests still work well inside the deadline",
          "[pg][runtime][faults]") {
  silent_listener hung; // accepts connections, never answers a command
  auto s = settings();
  s.redis.url = "redis://127.0.0.1:" + std::to_string(hung.port) + "/0";
  s.redis.timeout_ms = 200;
  runtime rt{s};
  auto t0 = clock_type::now();
  auto created = create_ok(rt);
  check_same(get_ok(rt, created.id), created);
  auto r = update(rt, created.id, price_patch(2222), created.version);
  REQUIRE(r);
  CHECK(r->price_cents == 2222);
  auto second = create_ok(rt);
  check_same(get_ok(rt, second.id), second);
  // Each Redis call costs at most its 200 ms timeout, then the client backs off for a second.
  CHECK(seconds_since(t0) < 4.0);
  check_same(get_ok(rt, created.id), r.value());
}

TEST_CASE("runtime: a change made while Redis was unreachable is not hidden by the stale cached "
          "value once Redis is back",
          "[pg][runtime][faults]") {
  auto s = settings();
  model::product created;
  {
    runtime rt{s};
    created = create_ok(rt); // cached in Redis at version 1
  }
  REQUIRE(from_redis(created.id));
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
    // The write committed while Redis was unreachable could neither SET nor DEL the key, so
    // Redis still holds the pre-outage value (version 1, old price). A fresh activation must
    // not serve it: a Redis outage makes reads slower, never wrong (an acknowledged update
    // that "disappears" would also make a PATCH with If-Match of the real version fail 412).
    CHECK(now.version == updated.version);
    CHECK(now.price_cents == 6543);
  }
  drop_from_redis(created.id);
}

TEST_CASE("runtime: with PostgreSQL unreachable, requests fail fast and readiness fails",
          "[pg][runtime][faults]") {
  auto s = settings();
  s.postgres.url = "postgresql://emporium@127.0.0.1:1/x"; // nothing listens there
  s.postgres.connect_timeout_ms = 2'000;
  runtime rt{s};

  auto t0 = clock_type::now();
  auto r = get(rt, persistence::new_id("prod"), 15s);
  REQUIRE_FALSE(r);
  CHECK((r.error().code == errc::unavailable || r.error().code == errc::timeout));
  CHECK(seconds_since(t0) < 15.0);

  // Again, on the next activation: still a bounded failure, not a hang.
  auto again = get(rt, persistence::new_id("prod"), 15s);
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
  auto r = get(rt, persistence::new_id("prod"), 15s);
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
    rt.update_product(created.id, price_patch(10'000 + i), created.version,
                      answers[i].callback());
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

TEST_CASE("runtime: a garbage cache entry is ignored, and replaced from PostgreSQL",
          "[pg][runtime][cache]") {
  auto s = settings();
  model::product created;
  {
    runtime rt{s};
    created = create_ok(rt);
  }
  {
    persistence::redis_cache c{persistence::redis_options{test::redis_url(), 1'000}};
    REQUIRE(c.set(ps::cache_key(created.id), "{\"not\": \"a product\"", 60));
  }
  {
    runtime rt{s};
    check_same(get_ok(rt, created.id), created);
  }
  auto repaired = from_redis(created.id);
  REQUIRE(repaired);
  check_same(*repaired, created);
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
