// A batch of placements in one transaction (order_store::place_orders, the SQL function
// emporium_place_orders) against the real PostgreSQL of the test environment: each order is
// all-or-nothing, the others commit; orders of one product see the stock the orders before
// them left; each placed order writes one stock_changed event per product, seqs dense.
// The database is shared: every row here is new.

#include "persistence/cart_store.hpp"
#include "persistence/order_store.hpp"
#include "persistence/store_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

using namespace emporium;
using namespace emporium::test::store_pg;
namespace os = emporium::persistence::order_store;
namespace carts = emporium::persistence::cart_store;

namespace {

std::string new_product(pg_session& s, std::int64_t stock) {
  return insert_stocked_product(s, stock, "BATCH");
}

std::string new_customer(pg_session& s) {
  return insert_customer_committed(s, "batch");
}

/// A committed, empty cart of `customer`.
model::cart new_cart(pg_session& s, const std::string& customer) {
  pqxx::work tx{s.connection()};
  auto cart = carts::insert_cart(tx, core::new_id("cart"), customer, 3600);
  tx.commit();
  return cart;
}

os::placement_request order_of(const std::string& customer,
                               const std::vector<std::pair<std::string, std::int64_t>>& lines) {
  os::placement_request r;
  r.order = unpaid_order(customer, lines);
  return r;
}

std::vector<os::batch_outcome> place(pg_session& s, std::vector<os::placement_request>& batch) {
  std::vector<const os::placement_request*> ptrs;
  for (const auto& r : batch)
    ptrs.push_back(&r);
  pqxx::work tx{s.connection()};
  auto out = os::place_orders(tx, ptrs);
  tx.commit();
  return out;
}

struct product_row {
  std::int64_t stock, version, event_seq;
};

product_row product_now(pg_session& s, const std::string& id) {
  pqxx::read_transaction tx{s.connection()};
  auto r = tx.exec_params("SELECT stock, version, event_seq FROM products WHERE id = $1", id).at(0);
  return {r[0].as<std::int64_t>(), r[1].as<std::int64_t>(), r[2].as<std::int64_t>()};
}

/// The product's stock_changed events, oldest first: (seq, stock).
std::vector<std::pair<std::int64_t, std::int64_t>> stock_events(pg_session& s,
                                                                const std::string& id) {
  pqxx::read_transaction tx{s.connection()};
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (const auto& r :
       tx.exec_params("SELECT seq, (payload->>'stock')::bigint FROM events WHERE entity = $1 "
                      "AND type = 'stock_changed' ORDER BY seq",
                      "product:" + id))
    out.emplace_back(r[0].as<std::int64_t>(), r[1].as<std::int64_t>());
  return out;
}

bool order_exists(pg_session& s, const std::string& id) {
  pqxx::read_transaction tx{s.connection()};
  return !tx.exec_params("SELECT 1 FROM orders WHERE id = $1", id).empty();
}

std::int64_t order_events(pg_session& s, const std::string& id) {
  pqxx::read_transaction tx{s.connection()};
  return tx.exec_params("SELECT count(*) FROM events WHERE entity = $1", "order:" + id)
    .at(0)[0]
    .as<std::int64_t>();
}

} // namespace

TEST_CASE(
  "a batch commits its good orders while a short one and a conflicting one leave no "
  "trace",
  "[pg][placement]") {
  pg_session s{pg_opts()};
  persistence::migrate(s);
  auto customer = new_customer(s);
  auto plenty = new_product(s, 10);
  auto scarce = new_product(s, 1);
  auto before = product_now(s, plenty);

  // A key already answered by an earlier order: a second order under it must not commit.
  auto earlier = order_of(customer, {{plenty, 1}});
  earlier.idem = os::idempotency_ref{customer, test::unique("key"), "hash-1"};
  {
    std::vector<os::placement_request> one{earlier};
    REQUIRE(place(s, one).at(0).ok());
  }
  before = product_now(s, plenty);

  std::vector<os::placement_request> batch;
  batch.push_back(order_of(customer, {{plenty, 2}, {scarce, 1}})); // placed
  batch.push_back(order_of(customer, {{scarce, 5}}));              // short
  batch.push_back(order_of(customer, {{plenty, 1}}));              // idempotency conflict
  batch.back().idem = os::idempotency_ref{customer, earlier.idem->key, "hash-1"};
  batch.push_back(order_of(customer, {{plenty, 3}})); // placed
  batch.back().idem = os::idempotency_ref{customer, test::unique("key"), "hash-2"};
  auto out = place(s, batch);
  REQUIRE(out.size() == 4);

  CHECK(out[0].ok());
  CHECK(out[1].placed.short_products == std::vector<std::string>{scarce});
  REQUIRE(out[2].failed);
  CHECK(out[2].failed->code == errc::conflict);
  CHECK(out[3].ok());

  // The stock after each placed order, with versions one apart.
  REQUIRE(out[0].placed.changes.size() == 2);
  CHECK(out[0].placed.changes[0].product_id == std::min(plenty, scarce));
  for (const auto& c : out[0].placed.changes)
    if (c.product_id == plenty) {
      CHECK(c.stock == before.stock - 2);
      CHECK(c.version == before.version + 1);
    } else {
      CHECK(c.stock == 0);
    }
  REQUIRE(out[3].placed.changes.size() == 1);
  CHECK(out[3].placed.changes[0].stock == before.stock - 5);
  CHECK(out[3].placed.changes[0].version == before.version + 2);
  CHECK(out[3].placed.stored.version == 1);
  CHECK(out[3].placed.stored.created_at_ms > 0);

  auto now = product_now(s, plenty);
  CHECK(now.stock == before.stock - 5);
  CHECK(now.version == before.version + 2);
  CHECK(now.event_seq == before.event_seq + 2);
  CHECK(product_now(s, scarce).stock == 0);

  // One stock_changed event per placed order, dense seqs, each with the stock after it.
  auto events = stock_events(s, plenty);
  REQUIRE(events.size() >= 2);
  CHECK(events[events.size() - 2] == std::make_pair(before.event_seq + 1, before.stock - 2));
  CHECK(events.back() == std::make_pair(before.event_seq + 2, before.stock - 5));
  CHECK(stock_events(s, scarce).size() == 1);

  CHECK(order_exists(s, batch[0].order.id));
  CHECK_FALSE(order_exists(s, batch[1].order.id));
  CHECK_FALSE(order_exists(s, batch[2].order.id));
  CHECK(order_exists(s, batch[3].order.id));
  CHECK(order_events(s, batch[0].order.id) == 1);
  CHECK(order_events(s, batch[2].order.id) == 0);

  // The key of the placed order replays it as placed, with its row's version and timestamps.
  pqxx::read_transaction tx{s.connection()};
  auto replay = os::find_idempotent(tx, customer, batch[3].idem->key);
  REQUIRE(replay);
  REQUIRE(replay->placed);
  CHECK(replay->placed->id == batch[3].order.id);
  CHECK(replay->placed->version == 1);
  CHECK(replay->placed->created_at_ms == out[3].placed.stored.created_at_ms);
  auto first = os::find_idempotent(tx, customer, earlier.idem->key);
  REQUIRE(first);
  REQUIRE(first->placed);
  CHECK(first->placed->id == earlier.order.id);
}

TEST_CASE("orders of one product that do not fit together are placed one by one while they fit",
          "[pg][placement]") {
  pg_session s{pg_opts()};
  persistence::migrate(s);
  auto customer = new_customer(s);
  auto hot = new_product(s, 5);
  auto before = product_now(s, hot);
  std::vector<os::placement_request> batch;
  for (auto qty : {3, 3, 2, 1})
    batch.push_back(order_of(customer, {{hot, qty}}));
  auto out = place(s, batch);
  REQUIRE(out.size() == 4);
  CHECK(out[0].ok());
  CHECK(out[1].placed.short_products == std::vector<std::string>{hot});
  CHECK(out[2].ok());
  CHECK_FALSE(out[3].ok()); // nothing left
  CHECK(out[0].placed.changes.at(0).stock == 2);
  CHECK(out[2].placed.changes.at(0).stock == 0);
  auto now = product_now(s, hot);
  CHECK(now.stock == 0);
  CHECK(now.version == before.version + 2);
  auto events = stock_events(s, hot);
  REQUIRE(events.size() == 2);
  CHECK(events[0] == std::make_pair(before.event_seq + 1, std::int64_t{2}));
  CHECK(events[1] == std::make_pair(before.event_seq + 2, std::int64_t{0}));
}

TEST_CASE(
  "a batch counts the unpaid orders placed before it in the same batch, and a stale "
  "cart fails only its own order",
  "[pg][placement]") {
  pg_session s{pg_opts()};
  persistence::migrate(s);
  auto capped = new_customer(s);
  auto other = new_customer(s);
  auto product = new_product(s, 50);
  auto cart = new_cart(s, other);
  std::vector<os::placement_request> batch;
  for (int i = 0; i < 3; ++i) {
    batch.push_back(order_of(capped, {{product, 1}}));
    batch.back().max_open_unpaid = 2;
  }
  batch.push_back(order_of(other, {{product, 1}}));
  batch.back().cart_id = cart.id;
  batch.back().cart_version = cart.version + 1; // another actor changed it since
  batch.push_back(order_of(other, {{product, 1}}));
  batch.back().cart_id = cart.id;
  batch.back().cart_version = cart.version;
  auto out = place(s, batch);
  CHECK(out[0].ok());
  CHECK(out[1].ok());
  CHECK(out[2].placed.over_unpaid_cap);
  CHECK(out[2].placed.open_unpaid == 2);
  REQUIRE(out[3].failed);
  CHECK(out[3].failed->code == errc::conflict);
  CHECK(out[4].ok());
  CHECK(product_now(s, product).stock == 47);
  pqxx::read_transaction tx{s.connection()};
  CHECK(carts::find_cart(tx, cart.id).value().order_id == batch[4].order.id);
}

namespace {

/// What a placement of `orders` wrote, as text: the orders, their lines and events, the
/// products' rows and events, the customers' idempotency records and the carts (all but the
/// events' serial ids, which no reader takes as meaning anything).
std::string written(pqxx::transaction_base& tx, const std::vector<std::string>& orders,
                    const std::vector<std::string>& products,
                    const std::vector<std::string>& customers,
                    const std::vector<std::string>& cart_ids) {
  std::vector<std::string> entities;
  for (const auto& o : orders)
    entities.push_back("order:" + o);
  for (const auto& p : products)
    entities.push_back("product:" + p);
  auto rows = [&](const std::string& sql, const std::vector<std::string>& ids) {
    return tx
      .exec_params(
        "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') "
        "FROM ("
          + sql + ") t",
        persistence::text_array(ids))
      .at(0)[0]
      .as<std::string>();
  };
  return rows("SELECT * FROM orders WHERE id = ANY($1::text[])", orders) + "\n--\n"
         + rows("SELECT * FROM order_lines WHERE order_id = ANY($1::text[])", orders) + "\n--\n"
         + rows(
           "SELECT entity, seq, type, payload, created_at FROM events "
           "WHERE entity = ANY($1::text[])",
           entities)
         + "\n--\n"
         + rows(
           "SELECT id, stock, version, event_seq, updated_at FROM products "
           "WHERE id = ANY($1::text[])",
           products)
         + "\n--\n"
         + rows("SELECT * FROM idempotency_keys WHERE customer_id = ANY($1::text[])", customers)
         + "\n--\n" + rows("SELECT * FROM carts WHERE id = ANY($1::text[])", cart_ids);
}

} // namespace

TEST_CASE("the set-based placement and the order-by-order one answer and write the same",
          "[pg][placement]") {
  pg_session s{pg_opts()};
  persistence::migrate(s);
  auto capped = new_customer(s);
  auto other = new_customer(s);
  auto plenty = new_product(s, 10);
  auto scarce = new_product(s, 3);
  auto few = new_product(s, 5);
  auto cart_a = new_cart(s, other);
  auto cart_b = new_cart(s, other);
  std::vector<os::placement_request> batch;
  auto add = [&](const std::string& customer,
                 std::vector<std::pair<std::string, std::int64_t>> lines) -> auto& {
    batch.push_back(order_of(customer, lines));
    return batch.back();
  };
  add(capped, {{plenty, 2}, {scarce, 1}}).max_open_unpaid = 2; // placed
  batch.back().idem = os::idempotency_ref{capped, test::unique("key"), "h0"};
  add(capped, {{scarce, 3}}).max_open_unpaid = 2;   // short: 2 left
  add(capped, {{plenty, 1}}).max_open_unpaid = 2;   // placed: the second unpaid
  add(capped, {{plenty, 1}}).max_open_unpaid = 2;   // over the cap
  add(other, {{scarce, 2}, {few, 1}, {plenty, 1}}); // placed, from a cart, under a key
  batch.back().cart_id = cart_a.id;
  batch.back().cart_version = cart_a.version;
  batch.back().idem = os::idempotency_ref{other, test::unique("key"), "h4"};
  add(other, {{few, 4}});                 // placed: the last 4
  add(other, {{few, 1}});                 // short
  add(other, {{plenty, 1}, {plenty, 2}}); // placed: one product on two lines
  batch.back().cart_id = cart_b.id;

  std::vector<const os::placement_request*> ptrs;
  std::vector<std::string> order_ids;
  for (const auto& r : batch) {
    ptrs.push_back(&r);
    order_ids.push_back(r.order.id);
  }
  auto batch_json = os::placement_batch_json(ptrs);
  auto run = [&](pqxx::work& tx, const std::string& fn) {
    tx.exec("SAVEPOINT before_batch");
    auto answer =
      tx.exec_params("SELECT " + fn + "($1::jsonb)::text", batch_json).at(0)[0].as<std::string>();
    auto rows = written(tx, order_ids, {plenty, scarce, few}, {capped, other},
                        {cart_a.id, cart_b.id});
    tx.exec("ROLLBACK TO SAVEPOINT before_batch");
    return std::make_pair(answer, rows);
  };
  auto few_before = product_now(s, few);
  // One transaction, so that both see the same now().
  pqxx::work tx{s.connection()};
  auto each = run(tx, "emporium_place_orders_each");
  auto together = run(tx, "emporium_place_orders_together");
  CHECK(together.first == each.first);
  CHECK(together.second == each.second);

  // Not two equal mistakes: the outcomes are those the comments above name.
  auto out = nlohmann::json::parse(together.first);
  REQUIRE(out.size() == batch.size());
  std::vector<std::string> kinds;
  for (const auto& o : out)
    kinds.push_back(o.contains("placed")        ? "placed"
                    : o.contains("short")       ? "short"
                    : o.contains("open_unpaid") ? "capped"
                                                : "failed");
  CHECK(kinds
        == std::vector<std::string>{"placed", "short", "placed", "capped", "placed", "placed",
                                    "short", "placed"});
  CHECK(out[3]["open_unpaid"] == 2);
  using nlohmann::json;
  CHECK(out[5]["changes"]
        == json::array({json::array({few, 0, few_before.version + 2, few_before.event_seq + 2})}));
}
