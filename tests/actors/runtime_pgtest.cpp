// Integration tests of the actor runtime through its public facade (actors/runtime.hpp), against
// the real PostgreSQL and Redis of the test environment: products created, read, listed and
// changed, and what the cache shows of them. Supervision, failing services and races are in
// runtime_resilience_pgtest.cpp. Callbacks run on actor threads: every call here waits for its
// answer on a future with a deadline and fails the test on timeout, and no Catch2 assertion is ever
// made from inside a callback.

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

// -- basics ---------------------------------------------------------------------------------------

TEST_CASE("runtime: a created product is read back, also after a restart", "[pg][runtime]") {
  auto s = settings();
  model::product created;
  auto d = make_draft();
  {
    runtime rt{s};
    created = create_ok(rt, d);
    CHECK(core::is_valid_id(created.id, "prod"));
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

TEST_CASE("runtime: readiness checks asked while one runs share its answer", "[pg][runtime]") {
  // GET /readyz is not rate limited: a flood of probes must not queue a query each.
  runtime rt{settings()};
  REQUIRE(ready(rt)); // the worker's connection is open
  auto jobs_before = rt.stats().db_jobs;
  constexpr int probes = 100;
  std::vector<pending<bool>> answers(probes);
  for (auto& a : answers)
    rt.check_ready(a.callback());
  for (auto& a : answers) {
    auto r = a.wait();
    REQUIRE(r);
    CHECK(r.value());
  }
  // Queries still queued would run after the answers (the first one answered them all): give
  // them the time to be counted.
  std::this_thread::sleep_for(500ms);
  auto ran = rt.stats().db_jobs - jobs_before;
  INFO(probes << " probes asked at once ran " << ran << " queries");
  CHECK(ran >= 1);
  CHECK(ran <= probes / 2);
  // A probe after they were answered checks again: no answer is kept. (Other jobs, a sweep,
  // may run meanwhile: the count can only be compared from below.)
  REQUIRE(ready(rt));
  CHECK(rt.stats().db_jobs - jobs_before > ran);
}

TEST_CASE("runtime: an unknown id is not found, and creating afterwards works", "[pg][runtime]") {
  runtime rt{settings()};
  auto unknown = core::new_id("prod");
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

TEST_CASE("runtime: an update is visible at once and to fresh activations, never in Redis",
          "[pg][runtime][cache]") {
  auto s = settings();
  model::product created, updated;
  {
    runtime rt{s};
    created = create_ok(rt);
    get_ok(rt, created.id); // active: the actor is the product's only cache
    CHECK_FALSE(redis_value(old_product_key(created.id)));

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
  // PostgreSQL holds the new value; Redis no copy of the product at all.
  auto row = from_postgres(created.id);
  REQUIRE(row);
  check_same(*row, updated);
  CHECK_FALSE(redis_value(old_product_key(created.id)));

  SECTION("a fresh runtime loads the new value from PostgreSQL") {
    runtime rt{s};
    check_same(get_ok(rt, created.id), updated);
    CHECK_FALSE(redis_value(old_product_key(created.id)));
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

TEST_CASE(
  "runtime: a conditional write that lost to a change behind the actor's back answers "
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

TEST_CASE(
  "runtime: an unconditional write is applied to the row as it is now, keeping a change "
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
}

// -- carts ----------------------------------------------------------------------------------------

TEST_CASE("runtime: a new cart is made and kept by its own actor, which reads nothing after",
          "[pg][runtime]") {
  runtime rt{settings()};
  auto who = new_customer(rt);
  // The pool's job count over a create and a read. Other jobs (the payment sweeper's, every few
  // seconds) may fall into a window, so three carts are made; one clean window is enough, and
  // an actor that reads its cart would add a job to every one of them.
  std::vector<std::int64_t> jobs;
  for (int i = 1; i <= 3; ++i) {
    const auto before = rt.stats().db_jobs;
    pending<model::cart_view> made;
    rt.create_cart(who, made.callback());
    auto c = made.wait(20s);
    REQUIRE(c);
    CHECK(c->basket.items.empty());
    CHECK(c->basket.customer_id == who.customer_id);
    CHECK(rt.stats().carts.activations == i); // the create activated it

    // Behind the actor's back (nothing else writes a cart): a row it would show if it read one.
    {
      persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 5'000}};
      pqxx::work tx{s.connection()};
      tx.exec_params(
        "UPDATE carts SET items = '[{\"product_id\": \"prod_x\", \"quantity\": 5}]' "
        "WHERE id = $1",
        c->basket.id);
      tx.commit();
    }
    pending<model::cart_view> read;
    rt.get_cart(who, c->basket.id, "US", read.callback());
    auto r = read.wait(20s);
    REQUIRE(r);
    CHECK(r->basket.items.empty()); // what the create wrote, kept by the actor
    CHECK(r->basket.version == c->basket.version);
    CHECK(rt.stats().carts.activations == i);
    jobs.push_back(rt.stats().db_jobs - before);
  }
  INFO("jobs per create and read: " << jobs[0] << ", " << jobs[1] << ", " << jobs[2]);
  CHECK(*std::min_element(jobs.begin(), jobs.end()) == 1); // its INSERT, and no read
}
