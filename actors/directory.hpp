#pragma once
/// Where an entity lives: entity key → the actor to send its messages to, typed with the
/// entity's interface. The one place a key is resolved; callers (the runtime, entities asking
/// each other) never know which node answers.
///
/// - Single node: the local manager of the entity's kind.
/// - Cluster (cluster.hpp): the owner of the key on the ring of live members. This node's own
///   keys go to the local manager; another member's go to the link to that member, which
///   forwards them and answers when the member dies. While this node does not hold the
///   majority's lease (it lost the cluster, or was frozen), every key goes to the refuser, which
///   answers 503: a node cut off serves nothing from memory and writes nothing.
///
/// Thread-safe: resolution reads an immutable view (swapped whole by the membership actor) and an
/// atomic lease, from any thread.

#include "actors/interfaces.hpp"
#include "core/ring.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

namespace emporium::actors {

/// Every entity message, for any kind: what a link to a peer and the refuser serve.
using any_entity_actor = product_actor::extend_with<customer_actor, cart_actor, order_actor>;

/// The membership as this node sees it, replaced whole on every change.
struct cluster_view {
  std::uint64_t version = 0; ///< grows on every change of the live members
  std::string self;          ///< this node's name, host:node_port
  core::ring ring;           ///< the live members, this node included
  /// The link to each live peer, by name.
  std::unordered_map<std::string, any_entity_actor> links;
};

class directory {
 public:
  using clock = std::chrono::steady_clock;

  /// The local manager of each kind.
  void add_local_products(product_actor m) { products_ = std::move(m); }
  void add_local_customers(customer_actor m) { customers_ = std::move(m); }
  void add_local_carts(cart_actor m) { carts_ = std::move(m); }
  void add_local_orders(order_actor m) { orders_ = std::move(m); }

  /// This node's name: host:node_port in a cluster, the HTTP address on a single node.
  void set_self(std::string name) { self_ = std::move(name); }

  /// Turns on resolution by the ring. Until the first view is published and the lease is
  /// granted, every key goes to `refuser`.
  void enable_cluster(any_entity_actor refuser) {
    refuser_ = std::move(refuser);
    clustered_ = true;
  }
  bool clustered() const { return clustered_; }
  const any_entity_actor& refuser() const { return refuser_; }
  const std::string& self() const { return self_; }

  /// The membership actor publishes each new view, and extends the lease while a majority of
  /// the configured members is heard from (`clock::time_point::max()`: for as long as it says).
  void publish(std::shared_ptr<const cluster_view> v) { std::atomic_store(&view_, std::move(v)); }
  void set_lease(clock::time_point until) {
    lease_until_.store(until.time_since_epoch().count(), std::memory_order_release);
  }
  std::shared_ptr<const cluster_view> view() const { return std::atomic_load(&view_); }

  /// Whether this node may serve entities now: always on a single node; in a cluster, while
  /// its lease from the majority runs.
  bool serving() const {
    return !clustered_
           || clock::now().time_since_epoch().count()
                < lease_until_.load(std::memory_order_acquire);
  }

  /// Null when this node serves `key` itself now; otherwise the actor that answers for it (the
  /// link to its owner, or the refuser).
  any_entity_actor elsewhere(const std::string& key) const {
    if (!clustered_)
      return {};
    if (!serving())
      return refuser_;
    auto v = view();
    if (!v)
      return refuser_;
    const auto& owner = v->ring.owner(key);
    if (owner == v->self)
      return {};
    auto it = v->links.find(owner);
    return it != v->links.end() ? it->second : refuser_;
  }

  /// The owner of `key` on the current ring (this node's name on a single node).
  std::string owner_of(const std::string& key) const {
    auto v = clustered_ ? view() : nullptr;
    return v ? v->ring.owner(key) : self_;
  }

  /// The actor for the product `id`, and so on.
  product_actor products(const std::string& id) const { return resolve(id, products_); }
  customer_actor customers(const std::string& id) const { return resolve(id, customers_); }
  cart_actor carts(const std::string& id) const { return resolve(id, carts_); }
  order_actor orders(const std::string& id) const { return resolve(id, orders_); }

  /// The local managers in a fixed order (product, customer, cart, order), untyped: what a
  /// peer forwards to, and what is stopped at shutdown.
  std::vector<caf::actor> local_managers() const {
    return {caf::actor_cast<caf::actor>(products_), caf::actor_cast<caf::actor>(customers_),
            caf::actor_cast<caf::actor>(carts_), caf::actor_cast<caf::actor>(orders_)};
  }

  /// Every local manager, untyped (to stop them).
  template <class F>
  void for_each_manager(F&& f) const {
    for (const auto& m : local_managers())
      if (m)
        f(m);
  }

 private:
  template <class Handle>
  Handle resolve(const std::string& key, const Handle& local) const {
    if (!clustered_)
      return local;
    if (auto other = elsewhere(key))
      return Handle{other};
    return local;
  }

  product_actor products_;
  customer_actor customers_;
  cart_actor carts_;
  order_actor orders_;
  bool clustered_ = false;
  std::string self_;
  any_entity_actor refuser_;
  std::shared_ptr<const cluster_view> view_;
  std::atomic<clock::rep> lease_until_{0};
};

} // namespace emporium::actors
