#pragma once
/// Group commit of order placements. One committer per node, a detached actor with its own
/// PostgreSQL connection, takes the placements that order actors send it and places all those
/// that arrived while its previous transaction was in flight in ONE transaction of one statement
/// (order_store::place_orders): one round trip, one commit (one WAL flush) and one delivery of
/// the notifications for up to placement_batch_cap orders. Each order stays all-or-nothing, and
/// each is answered only after the commit that holds it.
///
/// A batch whose commit outcome is unknown (the connection lost during COMMIT, a deadline) is
/// answered as such to every order of it, which then does what a single placement did: the
/// products re-read their stock, and the client's retry under its Idempotency-Key finds the
/// order or places it once. A batch that failed before COMMIT was rolled back and runs again.

#include "actors/db_pool.hpp"
#include "persistence/order_store.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace emporium::actors {

/// A placement for the committer; answered with model::order_change or a domain error. Local
/// only.
struct placement_job {
  persistence::order_store::placement_request req;
  std::chrono::steady_clock::time_point deadline; ///< answered errc::timeout when taken later
};

/// A read of the products' stock as PostgreSQL has it, answered with a model::order_change whose
/// `stock` holds it. It runs after every placement the committer received before it (committed
/// or failed by then): an order whose placement's answer was lost reads here what its
/// placement left behind.
struct placement_stock_read {
  std::vector<std::string> product_ids;
};

/// The committer's own reminder to place what it collected.
struct placement_flush {};

/// The most orders in one transaction. PostgreSQL keeps the ids of up to 64 subtransactions of a
/// transaction in shared memory; each order of a batch placed order by order is one (the
/// fallback of emporium_place_orders, migration 9).
inline constexpr std::size_t placement_batch_cap = 64;

/// Spawns a committer (detached: it blocks on PostgreSQL).
caf::actor spawn_placement_committer(caf::actor_system& sys, const config::settings& s,
                                     std::shared_ptr<pool_counters> counters);

/// The answer to an order of a batch: the placed order and its stock changes, or the domain
/// error it failed with (nothing of it was committed then).
result<model::order_change> placement_answer(persistence::order_store::batch_outcome&& b);

} // namespace emporium::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::placement_job)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::placement_flush)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::placement_stock_read)
