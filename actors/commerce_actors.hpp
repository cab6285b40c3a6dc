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
/// cannot oversell, they only make one of the orders fail. A commit whose answer was lost may
/// still have happened: the products then re-read their stock from PostgreSQL.
///
/// Paying an order (a saga step of its own; the provider is never called on a database worker):
/// 1. the intent: the order becomes `paying` with its charge reference (charge_reference: one
///    per order), in PostgreSQL;
/// 2. the charge, on a payment worker, retried with backoff on transient failures; the order
///    actor awaits it with a deadline but keeps answering (a payment or cancel meanwhile: 409);
/// 3. the outcome: captured → paid, payment row, loyalty points (one transaction); declined or
///    failed → back to pending_payment; unknown (deadline, crash) → left `paying`.
/// Reconciliation settles what is left `paying`: the sweeper nudges orders paying for longer
/// than a live payment can last (and at start), the order asks the provider about its
/// reference: charged → paid as above, not charged → back to pending_payment. The API shows
/// `paying` as pending_payment.

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
  db_pool* payment_workers;   ///< where the provider is called (blocking, like the database)
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
  /// A payment, its reconciliation or an expiry check is talking to the provider: no second
  /// one starts meanwhile.
  bool settling = false;
  static inline const char* name = "order";
};

customer_actor::behavior_type customer_entity(customer_actor::stateful_pointer<customer_state> self,
                                              commerce_env env, std::string id);

cart_actor::behavior_type cart_entity(cart_actor::stateful_pointer<cart_state> self,
                                      commerce_env env, std::string id);

order_actor::behavior_type order_entity(order_actor::stateful_pointer<order_state> self,
                                        commerce_env env, std::string id);

/// Cancels unpaid orders past their payment time and has payments whose outcome was lost
/// reconciled: at start (orders that expired or were left paying while no node ran) and then
/// periodically. Survives restarts because it reads the database, not timers. Nothing is
/// expired before the provider was asked whether a payment attempt of it was charged.
caf::behavior payment_sweeper(caf::event_based_actor* self, commerce_env env);

} // namespace emporium::actors
