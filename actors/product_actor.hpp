#pragma once
/// The product entity actor: a virtual actor holding one product while it is used.
/// - Activation: loads its state (Redis, then PostgreSQL) before it handles any message.
/// - Writes: go through to PostgreSQL and commit before the answer; then Redis is updated.
///   While a write is in flight the actor handles nothing else, so reads never see a state the
///   database has not committed and never an older one than the last acknowledged write.
/// - An unknown id answers not_found, and the actor asks its manager to passivate it at once;
///   a failed load stops the actor with that error, and its manager re-activates it on the next
///   message.

#include "actors/entity_env.hpp"

#include <map>

namespace emporium::actors {

struct product_state {
  std::string id;
  std::optional<model::product> product;
  /// Stock held for orders being placed: order id → quantity. Held stock is not available to
  /// other orders; it becomes a committed decrement (stock message) or is given back.
  std::map<std::string, std::int64_t> held;
  std::int64_t held_total = 0;
  shared_env env; ///< the product kind's environment, one copy for every product actor
  static inline const char* name = "product";
};

product_entity_actor::behavior_type product_entity(
  product_entity_actor::stateful_pointer<product_state> self, shared_env env, std::string id);

} // namespace emporium::actors
