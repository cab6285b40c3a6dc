// The payment sweep's read (persistence/order_store.cpp sweep) against the real PostgreSQL:
// every node runs a sweeper, and an advisory lock lets one of them read at a time.

#include "core/ids.hpp"
#include "persistence/customer_store.hpp"
#include "persistence/migrations.hpp"
#include "persistence/order_store.hpp"
#include "persistence/pg.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

using namespace emporium;
namespace os = emporium::persistence::order_store;
namespace customers = emporium::persistence::customer_store;
using persistence::pg_session;

namespace {

persistence::pg_options pg_opts() {
  return persistence::pg_options{test::pg_url(), 2'000, 5'000};
}

bool names(const std::optional<os::sweep_work>& work, const std::string& id) {
  return work && std::find(work->orders.begin(), work->orders.end(), id) != work->orders.end();
}

/// A new customer's order of `total_cents`, cancelled: its id.
std::string cancelled_order(pqxx::transaction_base& tx, std::int64_t total_cents) {
  auto customer = core::new_id("cust");
  auto order = core::new_id("ord");
  customers::insert_customer(tx, customer, test::unique("refund") + "@example.com", "Refund", "x");
  tx.exec_params(
    "INSERT INTO orders (id, customer_id, status, currency, subtotal_cents, "
    "shipping_cents, total_cents, shipping_address, payment_due_at) VALUES ($1, $2, "
    "'cancelled', 'USD', $3, 0, $3, '{}'::jsonb, now())",
    order, customer, total_cents);
  return order;
}

bool owes(const std::vector<os::owed_refund>& owed, const std::string& order_id) {
  return std::any_of(owed.begin(), owed.end(),
                     [&](const os::owed_refund& r) { return r.order_id == order_id; });
}

} // namespace

TEST_CASE("payment sweep: two sweeps at once, one reads the overdue orders, the other skips",
          "[pg][sweeper]") {
  pg_session s{pg_opts()};
  persistence::migrate(s);
  pg_session other{pg_opts()};
  auto customer = core::new_id("cust");
  auto order = core::new_id("ord");
  {
    pqxx::work tx{s.connection()};
    customers::insert_customer(tx, customer, test::unique("sweep") + "@example.com", "Sweep", "x");
    // Overdue since long before any other test's order: first in the sweep's order.
    tx.exec_params(
      "INSERT INTO orders (id, customer_id, status, currency, subtotal_cents, shipping_cents, "
      "total_cents, shipping_address, payment_due_at) VALUES ($1, $2, 'pending_payment', 'USD', "
      "0, 0, 0, '{}'::jsonb, '2001-01-01T00:00:00Z')",
      order, customer);
    tx.commit();
  }

  pqxx::read_transaction first{s.connection()};
  auto a = os::sweep(first, 500, 60'000, "simulated", 500);
  CHECK(names(a, order));
  {
    pqxx::read_transaction second{other.connection()};
    auto b = os::sweep(second, 500, 60'000, "simulated", 500);
    CHECK_FALSE(b.has_value()); // another node's sweep holds the lock: this one skips
    second.commit();
  }
  first.commit();

  // The lock ends with the transaction that took it: the next sweep reads.
  {
    pqxx::read_transaction third{other.connection()};
    CHECK(names(os::sweep(third, 500, 60'000, "simulated", 500), order));
    third.commit();
  }

  pqxx::work tx{s.connection()};
  tx.exec_params("UPDATE orders SET status = 'cancelled' WHERE id = $1", order);
  tx.commit();
}

TEST_CASE(
  "payment sweep: a refund is owed until the provider confirms it, and asked again later "
  "after each refusal",
  "[pg][sweeper]") {
  pg_session s{pg_opts()};
  persistence::migrate(s);
  std::string order;
  std::string reference;
  {
    pqxx::work tx{s.connection()};
    order = cancelled_order(tx, 500);
    reference = "ch_" + order;
    // Cancelled a minute ago: marked refunded then, and the provider never confirmed it.
    tx.exec_params(
      "INSERT INTO payments (order_id, provider, reference, amount_cents, currency, "
      "status, updated_at) VALUES ($1, 'simulated', $2, 500, 'USD', 'refunded', "
      "now() - interval '1 minute')",
      order, reference);
    tx.commit();
  }
  auto owed = [&s](std::int64_t older_than_ms) {
    pqxx::read_transaction tx{s.connection()};
    return os::refunds_owed(tx, 100'000, older_than_ms, "simulated");
  };
  CHECK(owes(owed(30'000), order));
  CHECK_FALSE(owes(owed(120'000), order)); // not yet as old as that
  {
    pqxx::read_transaction tx{s.connection()};
    auto work = os::sweep(tx, 100'000, 30'000, "simulated", 100'000);
    REQUIRE(work);
    CHECK(owes(work->refunds, order));
  }

  // Refused: asked again after twice the delay, then four times.
  {
    pqxx::work tx{s.connection()};
    os::settle_refund(tx, {order, reference}, false);
    tx.exec_params(
      "UPDATE payments SET updated_at = now() - interval '3 seconds' "
      "WHERE order_id = $1",
      order);
    tx.commit();
  }
  CHECK(owes(owed(1'000), order));       // 3 s > 2 × 1 s
  CHECK_FALSE(owes(owed(2'000), order)); // 3 s < 2 × 2 s

  // Confirmed: owed no more; confirming again changes nothing.
  for (int i = 0; i < 2; ++i) {
    pqxx::work tx{s.connection()};
    os::settle_refund(tx, {order, reference}, true);
    tx.commit();
  }
  CHECK_FALSE(owes(owed(0), order));
  pqxx::read_transaction tx{s.connection()};
  auto row = tx.exec_params(
                 "SELECT status, refund_attempts, refund_confirmed_at IS NOT NULL "
                 "FROM payments WHERE order_id = $1",
                 order)
               .at(0);
  CHECK(row[0].as<std::string>() == "refunded");
  CHECK(row[1].as<int>() == 1);
  CHECK(row[2].as<bool>());
}

TEST_CASE(
  "payment sweep: a charge captured after its order was cancelled unpaid is owed a refund, "
  "recorded once",
  "[pg][sweeper]") {
  pg_session s{pg_opts()};
  persistence::migrate(s);
  model::order o;
  o.currency = "USD";
  o.total_cents = 700;
  {
    pqxx::work tx{s.connection()};
    o.id = cancelled_order(tx, o.total_cents);
    tx.commit();
  }
  for (int i = 0; i < 2; ++i) { // a retried job records it once
    pqxx::work tx{s.connection()};
    os::owe_refund(tx, o, "simulated", "ch_" + o.id);
    tx.commit();
  }
  {
    pqxx::read_transaction tx{s.connection()};
    auto rows = tx.exec_params(
      "SELECT status, amount_cents, reference FROM payments "
      "WHERE order_id = $1",
      o.id);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0][0].as<std::string>() == "refunded");
    CHECK(rows[0][1].as<std::int64_t>() == 700);
    CHECK(owes(os::refunds_owed(tx, 100'000, 0, "simulated"), o.id));
    CHECK_FALSE(owes(os::refunds_owed(tx, 100'000, 0, "another"), o.id));
  }
  // Owed no more: no server's sweeper asks a provider that never charged it.
  pqxx::work tx{s.connection()};
  os::settle_refund(tx, {o.id, "ch_" + o.id}, true);
  tx.commit();
}
