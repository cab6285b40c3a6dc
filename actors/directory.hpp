#pragma once
/// Where an entity lives: entity key → a handle of the manager that hosts it, typed with the
/// entity's interface (the manager forwards every message of it). Single-node today: every kind
/// has one local manager. A cluster resolves the key here (to a remote manager's handle, on the
/// ring of nodes) without any change to the callers.

#include "actors/interfaces.hpp"

#include <string>

namespace emporium::actors {

class directory {
 public:
  /// The local manager of each kind.
  void add_local_products(product_actor m) { products_ = std::move(m); }
  void add_local_customers(customer_actor m) { customers_ = std::move(m); }
  void add_local_carts(cart_actor m) { carts_ = std::move(m); }
  void add_local_orders(order_actor m) { orders_ = std::move(m); }

  /// The manager responsible for the product `id`, and so on.
  const product_actor& products(const std::string& /*id*/) const { return products_; }
  const customer_actor& customers(const std::string& /*id*/) const { return customers_; }
  const cart_actor& carts(const std::string& /*id*/) const { return carts_; }
  const order_actor& orders(const std::string& /*id*/) const { return orders_; }

  /// Every local manager, untyped (to stop them).
  template <class F>
  void for_each_manager(F&& f) const {
    for (auto m : {caf::actor_cast<caf::actor>(products_), caf::actor_cast<caf::actor>(customers_),
                   caf::actor_cast<caf::actor>(carts_), caf::actor_cast<caf::actor>(orders_)})
      if (m)
        f(m);
  }

 private:
  product_actor products_;
  customer_actor customers_;
  cart_actor carts_;
  order_actor orders_;
};

} // namespace emporium::actors
