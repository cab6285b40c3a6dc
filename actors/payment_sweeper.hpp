#pragma once
/// The payment sweeper: nudges the orders whose payment time is over, and those left `paying`
/// for longer than a live payment can last; asks again for refunds owed (see order_actor.hpp).

#include "actors/entity_env.hpp"

namespace emporium::actors {

/// Cancels unpaid orders past their payment time, has payments whose outcome was lost
/// reconciled, and asks the provider again for the refunds it has not confirmed: at start
/// (orders that expired or were left paying while no node ran) and then periodically. Survives
/// restarts because it reads the database, not timers. Nothing is expired before the provider was
/// asked whether a payment attempt of it was charged. Every node runs one; a PostgreSQL advisory
/// lock in the sweep's read lets one node read at a time (the others skip that turn). Nudging an
/// order twice (two nodes' sweeps one after the other) is harmless: the order handles order_expire
/// only while its state calls for it, and every transition it makes is conditional on the status in
/// PostgreSQL.
caf::behavior payment_sweeper(caf::event_based_actor* self, entity_env env);

} // namespace emporium::actors
