// The cap on open unpaid orders (persistence/order_store.cpp place_order) against the real
// PostgreSQL of the test environment: it must hold when two transactions (two nodes) place
// orders of one customer at once. The database is shared: every row here is new.

#include "persistence/cart_store.hpp"
#include "persistence/order_store.hpp"
#include "persistence/store_support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>

using namespace emporium;
using namespace emporium::test::store_pg;
namespace cs = emporium::persistence::order_store;
namespace customers = emporium::persistence::customer_store;

namespace {

std::string new_product(pg_session& s) {
  return insert_stocked_product(s, 10, "CAP");
}

model::order unpaid_order(const std::string& customer, const std::string& product) {
  return test::store_pg::unpaid_order(customer, {{product, 1}});
}

} // namespace

TEST_CASE(
  "the unpaid-order cap holds for two transactions placing one customer's orders at "
  "once",
  "[pg][limits]") {
  pg_session one{pg_opts()}, two{pg_opts()}, watcher{pg_opts()};
  persistence::migrate(one);
  auto customer = insert_customer_committed(one, "cap");
  // Different products: no stock row serialises the two placements, only the cap's lock can.
  auto a = new_product(one);
  auto b = new_product(one);
  const int cap = 1;

  pqxx::work first{one.connection()};
  auto placed = cs::place_order(first, unpaid_order(customer, a), std::nullopt, std::nullopt, cap);
  REQUIRE_FALSE(placed.over_unpaid_cap);

  const int second_pid = two.connection().backendpid();
  cs::placement second_result;
  std::string second_error;
  std::thread second([&] {
    try {
      pqxx::work tx{two.connection()};
      second_result = cs::place_order(tx, unpaid_order(customer, b), std::nullopt, std::nullopt,
                                      cap);
      if (second_result.over_unpaid_cap)
        tx.abort();
      else
        tx.commit();
    } catch (const std::exception& e) {
      second_error = e.what();
    }
  });
  // Let the second placement reach the point where it must wait for the first (if it does not
  // wait, it is done by then and has already placed a second order).
  bool waited = false;
  for (int i = 0; i < 100 && !waited; ++i) {
    pqxx::read_transaction tx{watcher.connection()};
    waited = !tx.exec_params(
                  "SELECT 1 FROM pg_stat_activity WHERE pid = $1 "
                  "AND wait_event_type = 'Lock'",
                  second_pid)
                .empty();
    tx.commit();
    if (!waited)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  first.commit();
  second.join();
  INFO("second placement: " << second_error);
  REQUIRE(second_error.empty());
  CHECK(waited);
  CHECK(second_result.over_unpaid_cap);
  CHECK(second_result.open_unpaid == 1);
  pqxx::read_transaction tx{watcher.connection()};
  CHECK(tx.exec_params("SELECT count(*) FROM orders WHERE customer_id = $1", customer)
          .at(0)[0]
          .as<int>()
        == 1);
}

TEST_CASE("a checkout commits only while the cart is at the version its items were copied at",
          "[pg][limits]") {
  // An actor of a node that lost the cart a moment ago may check out items the cart no longer
  // has: the order's transaction refuses a cart row at another version.
  namespace carts = emporium::persistence::cart_store;
  pg_session s{pg_opts()};
  persistence::migrate(s);
  auto customer = core::new_id("cust");
  auto product = new_product(s);
  model::cart cart;
  {
    pqxx::work tx{s.connection()};
    customers::insert_customer(tx, customer, test::unique("cartv") + "@example.com", "C", "x");
    cart = carts::insert_cart(tx, core::new_id("cart"), customer, 3600);
    cart.items = {{product, 1}};
    cart = carts::save_cart_items(tx, cart, cart.version, 3600).value();
    tx.commit();
  }
  const auto copied_at = cart.version;
  {
    pqxx::work tx{s.connection()}; // another actor changed the items since
    cart.items = {{product, 2}};
    REQUIRE(carts::save_cart_items(tx, cart, cart.version, 3600));
    tx.commit();
  }
  {
    pqxx::work tx{s.connection()};
    CHECK_THROWS_AS(cs::place_order(tx, unpaid_order(customer, product), std::nullopt, cart.id,
                                    std::nullopt, copied_at),
                    pqxx::unique_violation);
  }
  pqxx::work tx{s.connection()};
  auto current = carts::find_cart(tx, cart.id).value();
  auto placed = cs::place_order(tx, unpaid_order(customer, product), std::nullopt, cart.id,
                                std::nullopt, current.version);
  CHECK(placed.changes.size() == 1);
  tx.commit();
}

TEST_CASE(
  "making a cart is safe to run twice with its id: the second run answers the first's "
  "cart",
  "[pg][limits][carts]") {
  namespace carts = emporium::persistence::cart_store;
  pg_session s{pg_opts()};
  persistence::migrate(s);
  auto customer = insert_customer_committed(s, "cartnew2");
  auto other = insert_customer_committed(s, "cartnew2b");
  pqxx::nontransaction tx{s.connection()};
  auto id = core::new_id("cart");
  auto first = carts::insert_cart(tx, id, customer, 3600);
  auto again = carts::insert_cart(tx, id, customer, 3600);
  CHECK(again.id == first.id);
  CHECK(again.version == first.version);
  CHECK(again.expires_at_ms == first.expires_at_ms);
  CHECK(tx.exec_params1("SELECT count(*) FROM carts WHERE id = $1", id)[0].as<int>() == 1);
  // Another customer's id is no cart of theirs.
  CHECK_THROWS(carts::insert_cart(tx, id, other, 3600));
}

TEST_CASE("saving a cart's items is safe to run twice: the second run answers the first's cart",
          "[pg][limits][carts]") {
  // A database job runs again on a fresh connection when its connection was lost before the
  // answer; the save is one autocommitted statement, so the first run may have committed.
  namespace carts = emporium::persistence::cart_store;
  pg_session s{pg_opts()};
  persistence::migrate(s);
  auto customer = insert_customer_committed(s, "cartx2");
  auto product = new_product(s);
  pqxx::nontransaction tx{s.connection()};
  auto cart = carts::insert_cart(tx, core::new_id("cart"), customer, 3600);
  auto next = cart;
  next.items = {{product, 2}};
  auto first = carts::save_cart_items(tx, next, cart.version, 3600);
  REQUIRE(first);
  CHECK(first->version == cart.version + 1);
  auto again = carts::save_cart_items(tx, next, cart.version, 3600);
  REQUIRE(again);
  CHECK(again->version == first->version);
  CHECK(again->updated_at_ms == first->updated_at_ms);
  REQUIRE(again->items.size() == 1);
  CHECK(again->items[0].quantity == 2);
  // Other items at that version are a conflict: someone else's write came first.
  auto other = next;
  other.items = {{product, 3}};
  CHECK_FALSE(carts::save_cart_items(tx, other, cart.version, 3600));
  // And the next change, at the version the first save made, goes on as usual.
  auto later = carts::save_cart_items(tx, other, first->version, 3600);
  REQUIRE(later);
  CHECK(later->version == first->version + 1);
  CHECK_FALSE(carts::save_cart_items(tx, next, cart.version, 3600)); // two versions behind
}

TEST_CASE(
  "carts made and saved several in one statement answer each as alone, whatever the "
  "others do, and twice the same cart in one batch",
  "[pg][limits][carts]") {
  // A database worker batches the creations and saves of carts (actors/db_pool.hpp): each cart
  // must come out as its own statement would have left it.
  namespace carts = emporium::persistence::cart_store;
  pg_session s{pg_opts()};
  persistence::migrate(s);
  auto alice = insert_customer_committed(s, "cartbatch-a");
  auto bob = insert_customer_committed(s, "cartbatch-b");
  auto product = new_product(s);
  pqxx::nontransaction tx{s.connection()};
  carts::new_cart a{core::new_id("cart"), alice};
  carts::new_cart b{core::new_id("cart"), bob};
  carts::new_cart stolen{a.id, bob}; // alice's id asked for by bob: no cart of his
  auto made = carts::insert_carts(tx, {&a, &b, &stolen, &a}, 3600);
  REQUIRE(made.size() == 4);
  REQUIRE(made[0]);
  REQUIRE(made[1]);
  CHECK(made[0]->customer_id == alice);
  CHECK(made[1]->customer_id == bob);
  CHECK_FALSE(made[2]);
  REQUIRE(made[3]); // made again: the first run's cart
  CHECK(made[3]->expires_at_ms == made[0]->expires_at_ms);

  auto a1 = *made[0];
  a1.items = {{product, 1}};
  auto b1 = *made[1];
  b1.items = {{product, 5}};
  auto a2 = a1;
  a2.version = a1.version + 1; // the next save of a, in the same batch, after a1's
  a2.items = {{product, 2}};
  auto stale = b1;
  stale.version = b1.version + 7; // a version b never had
  auto saved = carts::save_carts_items(tx, {&a1, &b1, &a2, &stale}, 3600);
  REQUIRE(saved.size() == 4);
  REQUIRE(saved[0]);
  CHECK(saved[0]->version == a1.version + 1);
  REQUIRE(saved[1]);
  CHECK(saved[1]->items.at(0).quantity == 5);
  REQUIRE(saved[2]);
  CHECK(saved[2]->version == a1.version + 2);
  CHECK(saved[2]->items.at(0).quantity == 2);
  CHECK_FALSE(saved[3]);
  CHECK(carts::find_cart(tx, a.id)->items.at(0).quantity == 2);
  CHECK(carts::find_cart(tx, b.id)->version == b1.version + 1);
  // The whole batch again (its answer lost with the connection): b's save and a's last one are
  // answered as they were; a's first is a conflict now (a moved two versions on).
  auto again = carts::save_carts_items(tx, {&b1, &a2}, 3600);
  REQUIRE(again[0]);
  CHECK(again[0]->version == saved[1]->version);
  REQUIRE(again[1]);
  CHECK(again[1]->version == saved[2]->version);
}
