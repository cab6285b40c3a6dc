#pragma once
/// A manager per entity kind and node: the supervisor of that kind's virtual actors.
/// - Routes: every message of the entity's interface goes to the actor of the entity its `id`
///   names, which is spawned on first use (activation) and monitored.
/// - Supervises: a crashed entity's down message removes it; the next message re-activates it
///   from storage. A crash costs the requests in that actor's mailbox, never the node.
/// - Owns: in a cluster it activates only keys this node owns. A message for another node's key
///   from this node is handed to that key's owner (through the directory); from another node it
///   is answered "moved" (errc::moved), and the sender resolves the key again. On `rebalance`
///   (the ring changed) it passivates every entity it no longer owns.
/// - Passivates: entities idle for `idle` are told to stop. Until their down message arrives,
///   new messages for them are held back and handed to a fresh activation afterwards, so two
///   live actors never hold the same entity on one node. An entity whose key exists nowhere is
///   passivated at once (report_absent).

#include "actors/interfaces.hpp"
#include "core/compact_hash.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace emporium::actors {

/// Per-kind counters, read by /metrics and tests.
struct kind_counters {
  std::atomic<std::int64_t> active{0};
  std::atomic<std::int64_t> activations{0};
  std::atomic<std::int64_t> passivations{0};
  std::atomic<std::int64_t> crashes{0};
};

/// Spawns the actor for one entity key; `fresh`: activated by a message that creates it
/// (creates_entity, messages.hpp), so it has nothing stored to read.
using entity_factory =
  std::function<caf::actor(caf::local_actor* self, const std::string& key, bool fresh)>;

struct manager_config {
  std::string kind;
  entity_factory make;
  caf::timespan idle;
  std::shared_ptr<kind_counters> counters;
  /// In a cluster: null when this node owns `key` now, else the actor answering for it (a link
  /// to the owner, or the refuser). Unset on a single node: every key is local.
  std::function<caf::actor(const std::string& key)> elsewhere;
  /// Counts messages from another node for a key this node does not own (answered "moved").
  std::shared_ptr<std::atomic<std::int64_t>> moved;
  /// Whether `key` was used at or after `since` by a path that bypasses the manager (product
  /// reads served from their snapshot). Asked before an entity is passivated as idle; unset for
  /// kinds whose every use goes through the manager.
  std::function<bool(const std::string& key, caf::actor_clock::time_point since)> used_since;
  /// The kind's entities report their own exit (report_exit) instead of being monitored: no
  /// monitor (48 bytes) and no entry in the index of monitored keys (40) per active entity.
  /// Only for a kind whose every entity calls report_exit when it stops, or its entries would
  /// outlive it.
  bool reports_exit = false;
};

/// A manager serves its entities' interface (it forwards each message to the entity named by
/// the message's `id`), plus its own: the sweep timer and absent reports.
template <class Interface>
using manager_actor = typename Interface::template extend<
  caf::reacts_to<sweep_atom>, caf::reacts_to<absent_atom, std::string, caf::actor_addr>,
  caf::reacts_to<rebalance_atom>,
  caf::reacts_to<exited_atom, std::string, caf::actor_addr, caf::error>>;

namespace detail {

/// Messages that arrived while an entity was passivating, with their promises.
using held_messages = std::vector<std::pair<caf::response_promise, caf::message>>;

/// One active entity. Kept small: a node holds a million of them.
struct manager_entry {
  caf::actor handle;
  caf::actor_clock::time_point last_used;
  /// Set exactly while the entity is passivating (stopping): the messages held for the next
  /// activation.
  std::unique_ptr<held_messages> held;
  bool stopping() const { return held != nullptr; }
};

struct manager_state {
  manager_config cfg;
  /// Every entity alive (or passivating) on this node, by key: the one place its key is kept.
  std::unordered_map<std::string, manager_entry, core::compact_string_hash> entities;
  /// The key of each monitored entity actor, for its down message: points at the key in
  /// `entities` (node-based, so the pointer stays valid until that entry is erased). Empty when
  /// the kind's entities report their own exit.
  std::unordered_map<caf::actor_id, const std::string*> keys;
  caf::timespan period{};       ///< of the sweep
  std::size_t sweep_bucket = 0; ///< where the sweep in progress goes on
  static inline const char* name = "entity_manager";
};

/// The parts of a manager that do not depend on its interface (manager.cpp).
void start_manager(caf::scheduled_actor* self, manager_state& st, manager_config cfg);
/// Hands `msg` to the entity `key` (activating it) or holds it while that entity passivates.
caf::response_promise route(caf::scheduled_actor* self, manager_state& st, const std::string& key,
                            caf::message msg, bool creates);
/// Delivers `msg` (answered through `rp`) to the entity `key` here, or to its owner elsewhere.
void dispatch(caf::scheduled_actor* self, manager_state& st, const std::string& key,
              caf::response_promise& rp, caf::message msg);
void on_sweep(caf::scheduled_actor* self, manager_state& st);
void on_rebalance(manager_state& st);
void on_absent(manager_state& st, const std::string& key, const caf::actor_addr& entity);
/// The entity `key` stopped for `reason` (its down message, or its own report).
void on_exited(caf::scheduled_actor* self, manager_state& st, const std::string& key,
               const caf::actor_addr& entity, const caf::error& reason);

/// The manager's handler of one message of the interface: routes it on its `id`.
template <class Signature>
struct route_by_id;

template <class Msg, class... Out>
struct route_by_id<caf::typed_mpi<caf::detail::type_list<Msg>, caf::output_tuple<Out...>>> {
  template <class Self>
  static auto handler(Self* self) {
    return [self](Msg& msg) -> caf::result<Out...> {
      auto key = msg.id;
      return route(self, self->state, key, caf::make_message(std::move(msg)),
                   creates_entity<Msg>::value);
    };
  }
};

template <class Interface, class Self, class... Signatures>
typename manager_actor<Interface>::behavior_type manager_behavior(
  Self* self, caf::detail::type_list<Signatures...>) {
  return {
    route_by_id<Signatures>::handler(self)...,
    [self](sweep_atom) { on_sweep(self, self->state); },
    [self](rebalance_atom) { on_rebalance(self->state); },
    [self](absent_atom, const std::string& key, const caf::actor_addr& entity) {
      on_absent(self->state, key, entity);
    },
    [self](exited_atom, const std::string& key, const caf::actor_addr& entity,
           const caf::error& reason) { on_exited(self, self->state, key, entity, reason); },
  };
}

template <class Interface>
typename manager_actor<Interface>::behavior_type manager_main(
  typename manager_actor<Interface>::template stateful_pointer<manager_state> self,
  manager_config cfg) {
  start_manager(self, self->state, std::move(cfg));
  return manager_behavior<Interface>(self, typename Interface::signatures{});
}

} // namespace detail

/// Spawns the manager of the entities `make` creates, which serve `Interface`.
template <class Interface>
manager_actor<Interface> spawn_manager(caf::actor_system& sys, manager_config cfg) {
  return sys.spawn(detail::manager_main<Interface>, std::move(cfg));
}

/// Called by an entity whose activation found nothing in storage: asks `manager` (the address
/// its factory was given) to passivate it now rather than after the idle timeout, so that
/// lookups of ids that do not exist leave no actors behind. Messages already on their way to
/// the entity are still answered (not found, or a create that arrived meanwhile); later ones are
/// held by the manager for a fresh activation, as with any passivation.
void report_absent(const caf::actor_addr& manager, const std::string& key,
                   const caf::actor_addr& entity);

/// Called by an entity of a kind that reports its own exit (manager_config::reports_exit) as it
/// stops, whatever the reason (passivation, crash, failed load, shutdown): tells `manager`, as
/// a down message would.
void report_exit(const caf::actor_addr& manager, const std::string& key,
                 const caf::actor_addr& entity, const caf::error& reason);

/// Gives memory back to the operating system after passivation. Neither allocator does it by
/// itself on a quiet node: jemalloc (the server's) purges freed pages only as it is called, and
/// glibc (the tests') keeps freed chunks in its arenas, so RSS would stay at its peak after the
/// actors are gone. Every `period`, when at least `threshold` entities of any kind passivated
/// since the last time, it asks jemalloc to purge every arena (or calls glibc's malloc_trim).
/// Detached: the call walks every arena (milliseconds for GBs) and must not hold up a
/// scheduler thread.
caf::actor spawn_memory_trimmer(caf::actor_system& sys,
                                std::vector<std::shared_ptr<kind_counters>> kinds,
                                caf::timespan period, std::int64_t threshold);

} // namespace emporium::actors
