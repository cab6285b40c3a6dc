#pragma once
/// The cart entity actor: its items persist; prices are read from the products whenever it is
/// shown, and a checkout asks the cart's customer to place the order.

#include "actors/entity_env.hpp"

namespace emporium::actors {

struct cart_state {
  std::string id;
  std::optional<model::cart> cart;
  static inline const char* name = "cart";
};

/// `fresh`: activated by its cart_create (the manager knows), so there is no row to read.
cart_entity_actor::behavior_type cart_entity(cart_entity_actor::stateful_pointer<cart_state> self,
                                             entity_env env, std::string id, bool fresh);

} // namespace emporium::actors
