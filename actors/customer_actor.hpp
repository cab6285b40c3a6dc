#pragma once
/// The customer entity actor: profile and loyalty points; places the customer's orders one at
/// a time (an order actor runs each placement), so that an Idempotency-Key is checked and
/// recorded without a race on this node.

#include "actors/entity_env.hpp"

#include <chrono>
#include <unordered_map>

namespace emporium::actors {

struct customer_state {
  std::string id;
  std::optional<model::customer> customer;
  /// Idempotency-Keys of placements whose answer was a timeout (their outcome unknown), by
  /// the time until which they may still commit: a retry under one of them meanwhile is told
  /// that it is still being placed (409), not answered as a fresh attempt would be (an order
  /// refused for the stock that very placement holds).
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> placing;
  static inline const char* name = "customer";
};

customer_entity_actor::behavior_type customer_entity(
  customer_entity_actor::stateful_pointer<customer_state> self, entity_env env, std::string id);

} // namespace emporium::actors
