#pragma once
/// The customer entity actor: profile and loyalty points; places the customer's orders one at
/// a time (an order actor runs each placement), so that an Idempotency-Key is checked and
/// recorded without a race on this node.

#include "actors/entity_env.hpp"

namespace emporium::actors {

struct customer_state {
  std::string id;
  std::optional<model::customer> customer;
  static inline const char* name = "customer";
};

customer_entity_actor::behavior_type customer_entity(
  customer_entity_actor::stateful_pointer<customer_state> self, entity_env env, std::string id);

} // namespace emporium::actors
