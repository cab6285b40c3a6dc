#pragma once
/// What the runtime integration tests share: settings with the schema migrated, a pending answer
/// with a deadline (callbacks run on actor threads; no Catch2 assertion is made inside one), the
/// facade calls as plain functions, products read directly from PostgreSQL and Redis, and a port
/// that never answers.

#include "actors/runtime.hpp"
#include "core/ids.hpp"
#include "persistence/cache.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg.hpp"
#include "persistence/product_store.hpp"
#include "support/eventually.hpp"
#include "support/silent_listener.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace emporium::test::runtime_pg {

using test::silent_listener;

using namespace std::chrono_literals;
namespace ps = emporium::persistence::product_store;
using actors::runtime;

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Brings the schema up to date once per process (the CI database starts empty).
inline void ensure_schema() {
  static std::once_flag once;
  std::call_once(once, [] {
    persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 5'000}};
    persistence::migrate(s);
  });
}

inline config::settings settings() {
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

inline result<model::product> get(runtime& rt, const std::string& id,
                                  std::chrono::milliseconds limit = 10s) {
  pending<model::product> p;
  rt.get_product(id, p.callback());
  return p.wait(limit);
}

inline result<model::product> create(runtime& rt, const model::product_draft& d,
                                     std::chrono::milliseconds limit = 10s) {
  pending<model::product> p;
  rt.create_product(d, p.callback());
  return p.wait(limit);
}

inline result<model::product> update(runtime& rt, const std::string& id,
                                     const model::product_patch& patch,
                                     std::int64_t expected_version = 0,
                                     std::chrono::milliseconds limit = 10s) {
  pending<model::product> p;
  rt.update_product(id, patch, expected_version, p.callback());
  return p.wait(limit);
}

inline result<model::product_page> list(runtime& rt, const model::product_query& q) {
  pending<model::product_page> p;
  rt.list_products(q, p.callback());
  return p.wait();
}

inline result<bool> ready(runtime& rt, std::chrono::milliseconds limit = 10s) {
  pending<bool> p;
  rt.check_ready(p.callback());
  return p.wait(limit);
}

inline result<bool> crash(runtime& rt, const std::string& id) {
  pending<bool> p;
  rt.crash_product(id, p.callback());
  return p.wait();
}

using test::eventually;

inline std::string describe(const failure& f) {
  return "errc(" + std::to_string(static_cast<int>(f.code)) + ") " + f.detail;
}

inline model::product_draft make_draft(const std::string& category = "pgtest") {
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

inline void check_same(const model::product& a, const model::product& b) {
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
inline model::product create_ok(runtime& rt, const model::product_draft& d = make_draft()) {
  auto r = create(rt, d);
  if (!r)
    FAIL("create failed: " << describe(r.error()));
  return r.value();
}

inline model::product get_ok(runtime& rt, const std::string& id) {
  auto r = get(rt, id);
  if (!r)
    FAIL("get " << id << " failed: " << describe(r.error()));
  return r.value();
}

inline std::optional<model::product> from_postgres(const std::string& id) {
  persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 5'000}};
  pqxx::read_transaction tx{s.connection()};
  auto p = ps::find(tx, id);
  tx.commit();
  return p;
}

/// The Redis key where earlier versions of this program cached a product. Nothing writes or
/// reads it any more: entities activate from PostgreSQL.
inline std::string old_product_key(const std::string& id) {
  return "emporium:product:" + id;
}

/// Whatever Redis holds under the product's old cache key.
inline std::optional<std::string> redis_value(const std::string& key) {
  persistence::redis_cache c{persistence::redis_options{test::redis_url(), 1'000}};
  return c.get(key);
}

inline bool redis_put(const std::string& key, const std::string& value) {
  persistence::redis_cache c{persistence::redis_options{test::redis_url(), 1'000}};
  return c.set(key, value, 60);
}

inline model::product_patch price_patch(std::int64_t cents) {
  model::product_patch p;
  p.price_cents = cents;
  return p;
}

/// A new customer (signed up through the runtime), as the caller of its requests.
inline model::principal new_customer(runtime& rt) {
  pending<model::customer> p;
  rt.create_customer(model::customer_draft{test::unique("runtime") + "@example.com",
                                           "Runtime Tester", "correct horse battery staple"},
                     p.callback());
  auto c = p.wait(20s);
  if (!c)
    FAIL("create customer: " << describe(c.error()));
  return model::principal{false, c->id};
}

} // namespace emporium::test::runtime_pg
