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
#include "actors/product_snapshot.hpp"
#include "actors/shared_behavior.hpp"

#include <map>

namespace emporium::actors {

struct product_state {
  product_state() = default;
  product_state(const product_state&) = delete;
  product_state& operator=(const product_state&) = delete;
  /// Withdraws the published snapshot: the actor stops (passivation, crash, absent, shutdown).
  ~product_state() {
    if (registry)
      registry->remove(id, owner);
  }

  /// The product as of its last committed change, or null (no such product). Shared with the
  /// node's registry, never changed: a change makes a new snapshot (`set`).
  const model::product* product() const { return snap ? &snap->product : nullptr; }

  /// Makes `p` the current state and publishes it; nothing (absent) when `p` is empty. When
  /// this returns, readers on any thread see the new state.
  void set(std::optional<model::product> p) {
    snap = p ? std::make_shared<const product_snapshot>(std::move(*p)) : nullptr;
    publish();
  }
  /// Publishes the current state again (a stock message that changed nothing here may follow
  /// an order that withheld the snapshot until this actor caught up).
  void publish() {
    if (registry && snap)
      registry->publish(snap, owner);
  }

  std::string id;
  snapshot_ptr snap;
  product_registry* registry = nullptr;
  std::uint64_t owner = 0; ///< this activation, in the registry
  /// Stock held for an order being placed. Held stock is not available to other orders; it
  /// becomes a committed decrement (stock message) or is given back (release, or hold_ttl).
  struct hold {
    std::int64_t quantity = 0;
    deadline_ptr expiry; ///< the release at hold_ttl, cancelled when the hold ends sooner
  };
  std::map<std::string, hold> held; ///< by order id
  std::int64_t held_total = 0;

  /// Ends the hold of `order_id`, if there is one.
  void end_hold(const std::string& order_id) {
    auto it = held.find(order_id);
    if (it == held.end())
      return;
    if (it->second.expiry)
      it->second.expiry->settle();
    held_total -= it->second.quantity;
    held.erase(it);
  }
  shared_env env; ///< the product kind's environment, one copy for every product actor
  static inline const char* name = "product";
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
