#pragma once
/// A manager per entity kind and node: the supervisor of that kind's virtual actors.
/// - Routes: every message whose first element is the entity key goes to that entity's actor,
///   which is spawned on first use (activation) and monitored.
/// - Supervises: a crashed entity's down message removes it; the next message re-activates it
///   from storage. A crash costs the requests in that actor's mailbox, never the node.
/// - Passivates: entities idle for `idle` are told to stop. Until their down message arrives,
///   new messages for them are held back and handed to a fresh activation afterwards, so two
///   live actors never hold the same entity on one node. An entity whose key exists nowhere is
///   passivated at once (report_absent).

#include "actors/types.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace emporium::actors {

/// Per-kind counters, read by /metrics and tests.
struct kind_counters {
  std::atomic<std::int64_t> active{0};
  std::atomic<std::int64_t> activations{0};
  std::atomic<std::int64_t> passivations{0};
  std::atomic<std::int64_t> crashes{0};
};

/// Spawns the actor for one entity key.
using entity_factory = std::function<caf::actor(caf::local_actor* self, const std::string& key)>;

struct manager_config {
  std::string kind;
  entity_factory make;
  caf::timespan idle;
  std::shared_ptr<kind_counters> counters;
};

caf::actor spawn_manager(caf::actor_system& sys, manager_config cfg);

/// Called by an entity whose activation found nothing in storage: asks `manager` (the address
/// its factory was given) to passivate it now rather than after the idle timeout, so that
/// lookups of ids that do not exist leave no actors behind. Messages already on their way to
/// the entity are still answered (not found, or a create that arrived meanwhile); later ones are
/// held by the manager for a fresh activation, as with any passivation.
void report_absent(const caf::actor_addr& manager, const std::string& key,
                   const caf::actor_addr& entity);

/// Gives memory back to the operating system after passivation. glibc keeps what freed actors
/// leave behind in its arenas, so RSS stayed at its peak after the actors were gone (issue 6:
/// 2,497 → 2,477 MiB after 1M actors passivated). Every `period`, when at least `threshold`
/// entities of any kind passivated since the last time, it calls malloc_trim(0). Detached: the
/// call walks every arena (milliseconds for GBs) and must not hold up a scheduler thread.
caf::actor spawn_memory_trimmer(caf::actor_system& sys,
                                std::vector<std::shared_ptr<kind_counters>> kinds,
                                caf::timespan period, std::int64_t threshold);

} // namespace emporium::actors
