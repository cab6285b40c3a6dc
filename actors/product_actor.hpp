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
#include "actors/manager.hpp"
#include "actors/pooled_actor.hpp"
#include "actors/product_snapshot.hpp"
#include "actors/shared_behavior.hpp"

#include <map>
#include <memory>
#include <string>

namespace emporium::actors {

/// What a product actor holds. Kept small: a node may hold a million (see bench/README.md,
/// "Memory"); every byte here is paid once per active product.
struct product_state {
  /// CAF constructs it with its actor; the actor then calls name_as().
  explicit product_state(caf::local_actor* self) : self_(self) {}
  product_state(const product_state&) = delete;
  product_state& operator=(const product_state&) = delete;
  /// The actor stops (passivation, crash, absent, shutdown; CAF destroys the state then, with
  /// the reason set): withdraws the published snapshot and tells the manager, which does not
  /// monitor products (manager_config::reports_exit).
  ~product_state() {
    if (!env)
      return;
    // Also when it holds no snapshot now: one published before the product went absent.
    if (env->snapshots)
      env->snapshots->remove(id(), self_->id());
    report_exit(env->manager, id(), self_->address(), self_->fail_state());
  }

  /// Names the product, once, before anything else.
  void name_as(std::string id) { absent_id_ = std::move(id); }
  /// The product's id: its snapshot's while there is one, else the state's own copy. A
  /// product that exists keeps one copy of its id, not two.
  const std::string& id() const { return snap ? snap->product.id : absent_id_; }

  /// The product as of its last committed change, or null (no such product). Shared with the
  /// node's registry, never changed: a change makes a new snapshot (`set`).
  const model::product* product() const { return snap ? &snap->product : nullptr; }

  /// Makes `p` the current state and publishes it; nothing (absent) when `p` is empty. When
  /// this returns, readers on any thread see the new state.
  void set(std::optional<model::product> p) {
    if (!p && snap)
      absent_id_ = snap->product.id;
    snap = p ? make_snapshot(std::move(*p)) : nullptr;
    if (snap)
      std::string{}.swap(absent_id_); // gives its memory back (clear() would keep it)
    publish();
  }
  /// Publishes the current state again (a stock message that changed nothing here may follow
  /// an order that withheld the snapshot until this actor caught up).
  void publish() {
    if (snap && env && env->snapshots)
      env->snapshots->publish(snap, self_->id());
  }

  /// Stock held for an order being placed. Held stock is not available to other orders; it
  /// becomes a committed decrement (stock message) or is given back (release, or hold_ttl).
  struct hold {
    std::int64_t quantity = 0;
    deadline_ptr expiry; ///< the release at hold_ttl, cancelled when the hold ends sooner
  };
  bool holds(const std::string& order_id) const {
    return held_ && held_->by_order.count(order_id) > 0;
  }
  bool holds_nothing() const { return !held_; }
  /// Units held, for every order.
  std::int64_t held_total() const { return held_ ? held_->total : 0; }
  void add_hold(const std::string& order_id, hold h) {
    if (!held_)
      held_ = std::make_unique<hold_table>();
    held_->total += h.quantity;
    held_->by_order.emplace(order_id, std::move(h));
  }
  /// Ends the hold of `order_id`, if there is one.
  void end_hold(const std::string& order_id) {
    if (!held_)
      return;
    auto it = held_->by_order.find(order_id);
    if (it == held_->by_order.end())
      return;
    if (it->second.expiry)
      it->second.expiry->settle();
    held_->total -= it->second.quantity;
    held_->by_order.erase(it);
    if (held_->by_order.empty())
      held_.reset();
  }

  snapshot_ptr snap;
  shared_env env; ///< the product kind's environment, one copy for every product actor
  static inline const char* name = "product";

 private:
  caf::local_actor* self_;
  std::string absent_id_; ///< the id while no snapshot holds it
  /// The holds; none while no order is being placed (most products, most of the time): an
  /// empty std::map is 48 bytes.
  struct hold_table {
    std::map<std::string, hold> by_order;
    std::int64_t total = 0;
  };
  std::unique_ptr<hold_table> held_;
};

/// One active product. Every product shares one behavior (shared_behavior.hpp): a node may
/// hold a million of them.
class product_entity
  : public shared_behavior_entity<product_entity, product_state, product_entity_actor> {
 public:
  product_entity(caf::actor_config& cfg, shared_env env, std::string id);

  /// The activation: loads the product; no message is handled before it is known.
  void start() { load(); }
  static behavior_type shared_behavior();

  /// Loads the product again (activation, or a write whose outcome is unknown). A failed load
  /// stops the actor; its mailbox is bounced with the reason, and the next message re-activates
  /// it.
  void load();
};

} // namespace emporium::actors

// Product actors come from a pool of their own, at their exact size (pooled_actor.hpp).
EMPORIUM_POOLED_ACTOR(emporium::actors::product_entity)
