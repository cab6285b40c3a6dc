#pragma once
/// What the persistence integration tests share: connection options for the test PostgreSQL, the
/// schema migrated once, product drafts, committed inserts and reads, and a port that never
/// answers.

#include "core/ids.hpp"
#include "persistence/cache.hpp"
#include "persistence/credentials.hpp"
#include "persistence/customer_store.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg.hpp"
#include "persistence/product_store.hpp"
#include "persistence/seed.hpp"
#include "support/silent_listener.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace emporium::test::store_pg {

using test::silent_listener;

namespace ps = emporium::persistence::product_store;
using persistence::pg_session;

inline persistence::pg_options pg_opts() {
  return persistence::pg_options{test::pg_url(), 2'000, 5'000};
}

/// Brings the schema up to date once per process (the CI database starts empty).
inline void ensure_schema() {
  static std::once_flag once;
  std::call_once(once, [] {
    pg_session s{pg_opts()};
    persistence::migrate(s);
  });
}

inline model::product_draft make_draft(const std::string& category = "pgtest") {
  model::product_draft d;
  d.sku = test::unique("SKU");
  d.name = "Test Lamp " + d.sku;
  d.description = "A lamp for integration tests — with ünïcode";
  d.price_cents = 2599;
  d.currency = "EUR";
  d.category = category;
  d.stock = 7;
  d.weight_grams = 350;
  d.images = {"https://images.example.com/a.jpg", "https://images.example.com/b.jpg"};
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

inline model::product insert_committed(pg_session& s, const model::product_draft& d) {
  pqxx::work tx{s.connection()};
  auto p = ps::insert(tx, core::new_id("prod"), d);
  tx.commit();
  return p;
}

inline std::optional<model::product> find_committed(pg_session& s, const std::string& id) {
  pqxx::read_transaction tx{s.connection()};
  auto p = ps::find(tx, id);
  tx.commit();
  return p;
}

/// A committed product of `stock` units at 500 cents, its SKU starting with `prefix`; its id.
inline std::string insert_stocked_product(pg_session& s, std::int64_t stock,
                                          const std::string& prefix) {
  model::product_draft d;
  d.sku = test::unique(prefix);
  d.name = "Widget " + d.sku;
  d.price_cents = 500;
  d.currency = "USD";
  d.stock = stock;
  return insert_committed(s, d).id;
}

/// A committed customer with a unique e-mail starting with `prefix`; its id.
inline std::string insert_customer_committed(pg_session& s, const std::string& prefix) {
  auto id = core::new_id("cust");
  pqxx::work tx{s.connection()};
  persistence::customer_store::insert_customer(tx, id, test::unique(prefix) + "@example.com",
                                               "Customer " + prefix, "x");
  tx.commit();
  return id;
}

/// An unpaid order (pending payment, due in 15 minutes) of `customer`: `lines` are
/// (product id, quantity) at 500 cents each.
inline model::order unpaid_order(const std::string& customer,
                                 const std::vector<std::pair<std::string, std::int64_t>>& lines) {
  model::order o;
  o.id = core::new_id("ord");
  o.customer_id = customer;
  o.status = model::order_status::pending_payment;
  for (const auto& [product, qty] : lines) {
    o.lines.push_back(model::order_line{product, "Widget", 500, qty, 10});
    o.subtotal_cents += 500 * qty;
  }
  o.currency = "USD";
  o.total_cents = o.subtotal_cents;
  o.shipping_address.name = "A";
  o.shipping_address.line1 = "L";
  o.shipping_address.city = "C";
  o.shipping_address.postal_code = "1";
  o.shipping_address.country = "US";
  o.payment_due_at_ms =
    std::chrono::duration_cast<std::chrono::milliseconds>(
      (std::chrono::system_clock::now() + std::chrono::minutes(15)).time_since_epoch())
      .count();
  return o;
}

inline std::int64_t scalar(pg_session& s, const std::string& sql) {
  pqxx::nontransaction tx{s.connection()};
  return tx.exec(sql)[0][0].as<std::int64_t>();
}

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

} // namespace emporium::test::store_pg
