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

bool names(const std::optional<std::vector<std::string>>& ids, const std::string& id) {
  return ids && std::find(ids->begin(), ids->end(), id) != ids->end();
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
  auto a = os::sweep(first, 500, 60'000);
  CHECK(names(a, order));
  {
    pqxx::read_transaction second{other.connection()};
    auto b = os::sweep(second, 500, 60'000);
    CHECK_FALSE(b.has_value()); // another node's sweep holds the lock: this one skips
    second.commit();
  }
  first.commit();

  // The lock ends with the transaction that took it: the next sweep reads.
  {
    pqxx::read_transaction third{other.connection()};
    CHECK(names(os::sweep(third, 500, 60'000), order));
    third.commit();
  }

  pqxx::work tx{s.connection()};
  tx.exec_params("UPDATE orders SET status = 'cancelled' WHERE id = $1", order);
  tx.commit();
}
