#pragma once
/// The payment sweeper: nudges the orders whose payment time is over, and those left `paying`
/// for longer than a live payment can last (see order_actor.hpp).

#include "actors/entity_env.hpp"

namespace emporium::actors {

/// Cancels unpaid orders past their payment time and has payments whose outcome was lost
/// reconciled: at start (orders that expired or were left paying while no node ran) and then
/// periodically. Survives restarts because it reads the database, not timers. Nothing is
/// expired before the provider was asked whether a payment attempt of it was charged.
caf::behavior payment_sweeper(caf::event_based_actor* self, entity_env env);

} // namespace emporium::actors
