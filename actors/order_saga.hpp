#pragma once
/// Placing an order (the reservation saga), run by the order actor:
/// 1. lines are merged and sorted by product id; every product actor is asked at once to hold
///    its quantity (all-or-nothing in memory, no database round trip);
/// 2. if any product is short, every hold taken is released: 409 naming them;
/// 3. else the node's placement committer places the order in the next transaction it commits
///    (with the other orders that arrived meanwhile, each all-or-nothing): the stock is taken
///    conditionally, the customer's unpaid orders are counted under a lock of its row (409 at
///    `orders.max_open_unpaid_per_customer`), the order, its lines, the outbox events and the
///    idempotency record are written; only after COMMIT does the order answer 201, and the
///    products learn their new committed stock (publish_stock, before the 201 is delivered).
/// The database condition is the last guard: even two actors for one product (a split cluster)
/// cannot oversell, they only make one of the orders fail. A commit whose answer was lost may
/// still have happened: the products then re-read their stock from PostgreSQL.

#include "actors/order_actor.hpp"
#include "persistence/order_store.hpp"

#include <vector>

namespace emporium::actors {

using order_ptr = order_entity_actor::stateful_pointer<order_state>;

/// Runs the saga for `req`, whose `lines` are normalised and within an order's limits, and
/// answers the placed order (or the failure) to `rp`. A failed placement stops the actor.
void place_order(order_ptr self, const entity_env& env, model::order_request req,
                 std::vector<model::line_request> lines,
                 caf::typed_response_promise<model::order> rp);

/// Retires the cached search results when a committed transaction changed some stock.
void catalog_changed_by(persistence::backend& b,
                        const std::vector<persistence::order_store::stock_change>& changes);

std::vector<model::stock_level> levels(
  const std::vector<persistence::order_store::stock_change>& changes);

/// Tells each product its committed stock: withholds this node's older product snapshot at once,
/// then sends the product actor its stock message. Call it after the commit and before the order's
/// answer, with the absolute stock and row version the commit returned, so that a read after the
/// answer shows the new stock.
void publish_stock(const entity_env& env, const std::string& order_id,
                   const std::vector<model::stock_level>& stock);

/// Tells the customer its committed loyalty points, when `ch` changed them.
void publish_points(const entity_env& env, const model::order_change& ch);

} // namespace emporium::actors
