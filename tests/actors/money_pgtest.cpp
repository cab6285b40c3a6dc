// Money and state against the real PostgreSQL and Redis: a product load cannot put a copy into
// Redis after a newer change invalidated it.

#include "actors/runtime.hpp"
#include "persistence/backend.hpp"
#include "persistence/commerce_store.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg.hpp"
#include "persistence/product_store.hpp"
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

// -- the cache write of a load never overtakes a newer invalidation ------------------------------

/// What the hook does between the load's read and its cache write: an order commits a new
/// stock and invalidates the cached product, as commerce_actors.cpp does after a commit.
std::string hooked_id;
void order_commits_meanwhile(persistence::backend& b, const model::product& read) {
  if (read.id != hooked_id)
    return;
  pqxx::work tx{b.pg.connection()};
  auto row = tx.exec_params("UPDATE products SET stock = stock - 1, version = version + 1 "
                            "WHERE id = $1 RETURNING version",
                            read.id)
               .at(0);
  tx.commit();
  ps::forget_cached(b.cache, read.id, row[0].as<std::int64_t>(), b.cache_ttl_s);
}

} // namespace

TEST_CASE("cache: a load that read before an order's commit cannot cache its copy after the "
          "order's invalidation",
          "[pg][cache][money]") {
  ensure_schema();
  auto s = test::test_settings();
  persistence::backend b{s};
  model::product created;
  {
    pqxx::work tx{b.pg.connection()};
    created = ps::insert(tx, test::unique("prod"), make_draft(10));
    tx.commit();
  }
  REQUIRE(b.cache.del(ps::cache_key(created.id)));

  hooked_id = created.id;
  ps::testing::after_read = order_commits_meanwhile;
  auto first = ps::load(b, created.id, true); // reads v1, then the order commits v2
  ps::testing::after_read = nullptr;
  hooked_id.clear();
  REQUIRE(first);
  CHECK(first->version == created.version); // what it read, before the order

  // Redis must not hold the copy the load read: a reader would get the old stock for an hour.
  auto cached = b.cache.get(ps::cache_key(created.id));
  if (cached) {
    auto p = ps::decode(*cached);
    CHECK_FALSE((p && p->version == created.version));
  }
  auto again = ps::load(b, created.id, true);
  REQUIRE(again);
  CHECK(again->version == created.version + 1);
  CHECK(again->stock == created.stock - 1);
  // That load cached the current row: a newer version replaces the tombstone.
  auto now_cached = b.cache.get(ps::cache_key(created.id));
  REQUIRE(now_cached);
  auto decoded = ps::decode(*now_cached);
  REQUIRE(decoded);
  CHECK(decoded->version == created.version + 1);
  // And an older copy still cannot replace it.
  CHECK(ps::cache_put(b.cache, created, 60));
  auto still = ps::decode(b.cache.get(ps::cache_key(created.id)).value_or(""));
  REQUIRE(still);
  CHECK(still->version == created.version + 1);
}
