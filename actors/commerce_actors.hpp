#pragma once
/// The commerce entity actors (customer, cart, order) and the payment-timeout sweeper.
///
/// Placing an order (the reservation saga), in the order actor:
/// 1. lines are merged and sorted by product id; each product actor is asked in that order to
///    hold the quantity (all-or-nothing in memory, no database round trip);
/// 2. if any product is short, every hold already taken is released: 409 naming them;
/// 3. else ONE PostgreSQL transaction takes the stock (conditionally, `stock >= qty`), counts
///    the customer's unpaid orders under a lock of its row (409 at
///    `orders.max_open_unpaid_per_customer`), inserts the order, its lines, the outbox events
///    and the idempotency record; only after COMMIT does the order answer 201, and the
///    products learn their new committed stock.
/// The database condition is the last guard: even two actors for one product (a split cluster)
/// cannot oversell, they only make one of the orders fail.

#include "actors/db_pool.hpp"
#include "actors/directory.hpp"
#include "actors/interfaces.hpp"
#include "actors/payment_provider.hpp"
#include "config/settings.hpp"

#include <memory>

namespace emporium::actors {

/// What commerce actors share; owned by the runtime, outlives every actor.
struct commerce_env {
  db_pool* pool;
  const directory* dir;
  const config::settings* settings;
  std::shared_ptr<payment_provider> payments;
  caf::timespan db_timeout;
  caf::timespan call_timeout; ///< one request to another entity
  caf::actor_addr manager;    ///< the manager that spawned this entity (set by its factory)
};

struct customer_state {
  std::string id;
  std::optional<model::customer> customer;
  static inline const char* name = "customer";
};

struct cart_state {
  std::string id;
  std::optional<model::cart> cart;
  static inline const char* name = "cart";
};

struct order_state {
  std::string id;
  std::optional<model::order> order;
  static inline const char* name = "order";
};

customer_actor::behavior_type customer_entity(customer_actor::stateful_pointer<customer_state> self,
                                              commerce_env env, std::string id);

cart_actor::behavior_type cart_entity(cart_actor::stateful_pointer<cart_state> self,
                                      commerce_env env, std::string id);

order_actor::behavior_type order_entity(order_actor::stateful_pointer<order_state> self,
                                        commerce_env env, std::string id);

/// Cancels unpaid orders past their payment time: at start (orders that expired while no node
/// ran) and then periodically. Survives restarts because it reads the database, not timers.
caf::behavior payment_sweeper(caf::event_based_actor* self, commerce_env env);

} // namespace emporium::actors
