#include "actors/manager.hpp"

#include <spdlog/spdlog.h>

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <unordered_map>
#include <vector>

/// jemalloc's control interface, when the executable is linked with it; null otherwise (weak).
extern "C" int mallctl(const char* name, void* oldp, std::size_t* oldlenp, void* newp,
                       std::size_t newlen) __attribute__((weak));

namespace emporium::actors {

namespace {

using detail::manager_entry;
using detail::manager_state;

manager_entry& activate(caf::scheduled_actor* self, manager_state& st, const std::string& key,
                        bool fresh) {
  auto handle = st.cfg.make(self, key, fresh);
  st.cfg.counters->activations.fetch_add(1, std::memory_order_relaxed);
  st.cfg.counters->active.fetch_add(1, std::memory_order_relaxed);
  auto [it, inserted] = st.entities.try_emplace(key);
  auto& e = it->second;
  if (!st.cfg.reports_exit) {
    self->monitor(handle);
    st.keys[handle.id()] = &it->first;
  }
  e.handle = std::move(handle);
  e.last_used = self->clock().now();
  e.held.reset();
  return e;
}

void on_down(caf::scheduled_actor* self, manager_state& st, const caf::down_msg& dm) {
  auto k = st.keys.find(dm.source.id());
  if (k == st.keys.end())
    return;
  auto key = *k->second;
  st.keys.erase(k);
  detail::on_exited(self, st, key, dm.source, dm.reason);
}

/// Delivers `msg` to the entity `key` on this node (activating it), or holds it while that
/// entity passivates. The caller has checked that this node owns the key. `creates`: `msg`
/// creates its entity (creates_entity), which then starts fresh if this activates it.
void hand_to_entity(caf::scheduled_actor* self, manager_state& st, const std::string& key,
                    caf::response_promise& rp, caf::message msg, bool creates = false) {
  auto it = st.entities.find(key);
  manager_entry* e = it != st.entities.end() ? &it->second : &activate(self, st, key, creates);
  if (e->stopping()) {
    e->held->emplace_back(rp, std::move(msg));
    return;
  }
  e->last_used = self->clock().now();
  rp.delegate(e->handle, std::move(msg));
}

/// Whether the message being handled came from another node.
bool from_other_node(caf::scheduled_actor* self) {
  const auto& sender = self->current_sender();
  return sender && sender->node() != self->node();
}

/// From now on messages for the entity are held; the passivate message reaches it after every
/// message delegated to it before, so those are still answered.
void passivate(manager_entry& e) {
  e.held = std::make_unique<detail::held_messages>();
  caf::anon_send(e.handle, passivate_atom_v);
}

} // namespace

namespace detail {

void start_manager(caf::scheduled_actor* self, manager_state& st, manager_config cfg) {
  st.cfg = std::move(cfg);
  // Sweep often enough that an entity stays at most ~1.25 idle periods.
  st.period = std::clamp<caf::timespan>(st.cfg.idle / 4, std::chrono::milliseconds(50),
                                        std::chrono::seconds(15));
  self->set_down_handler([self, &st](caf::down_msg& dm) { on_down(self, st, dm); });
  // Entities are monitored, not linked (a crash of one must not take the manager down), so a
  // stopping manager stops them itself; otherwise they would keep the actor system alive.
  self->set_exit_handler([self, &st](caf::exit_msg& msg) {
    for (auto& [key, e] : st.entities)
      caf::anon_send_exit(e.handle, caf::exit_reason::user_shutdown);
    self->quit(std::move(msg.reason));
  });
  caf::anon_send(caf::actor_cast<caf::actor>(self), sweep_atom_v);
}

caf::response_promise route(caf::scheduled_actor* self, manager_state& st, const std::string& key,
                            caf::message msg, bool creates) {
  auto rp = self->make_response_promise();
  if (st.cfg.elsewhere) {
    if (auto other = st.cfg.elsewhere(key)) {
      if (from_other_node(self)) {
        // The sender's ring differs from ours (a change still spreading): it resolves again.
        if (st.cfg.moved)
          st.cfg.moved->fetch_add(1, std::memory_order_relaxed);
        rp.deliver(make_domain_error(errc::moved, "the entity " + key + " is not owned here"));
      } else {
        rp.delegate(other, std::move(msg));
      }
      return rp;
    }
  }
  hand_to_entity(self, st, key, rp, std::move(msg), creates);
  return rp;
}

void dispatch(caf::scheduled_actor* self, manager_state& st, const std::string& key,
              caf::response_promise& rp, caf::message msg) {
  if (st.cfg.elsewhere) {
    if (auto other = st.cfg.elsewhere(key)) {
      rp.delegate(other, std::move(msg));
      return;
    }
  }
  hand_to_entity(self, st, key, rp, std::move(msg));
}

void on_sweep(caf::scheduled_actor* self, manager_state& st) {
  // A bounded slice of the table per message turn, so that a sweep over a million entities does
  // not hold the scheduler thread for tens of milliseconds: the next slice is a message queued
  // behind whatever arrived meanwhile. Buckets are visited by index; a rehash between slices
  // may make an entity wait for the next sweep, never passivate one that is in use.
  constexpr std::size_t buckets_per_turn = 4096;
  auto now = self->clock().now();
  const auto buckets = st.entities.bucket_count();
  const auto end = std::min(buckets, st.sweep_bucket + buckets_per_turn);
  for (auto b = st.sweep_bucket; b < end; ++b)
    for (auto it = st.entities.begin(b); it != st.entities.end(b); ++it) {
      auto& e = it->second;
      if (e.stopping() || now - e.last_used < st.cfg.idle)
        continue;
      if (st.cfg.used_since && st.cfg.used_since(it->first, now - st.cfg.idle)) {
        e.last_used = now; // used without a message through here: not idle
        continue;
      }
      passivate(e);
    }
  if (end < buckets) {
    st.sweep_bucket = end;
    caf::anon_send(caf::actor_cast<caf::actor>(self), sweep_atom_v);
    return;
  }
  st.sweep_bucket = 0;
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), st.period, sweep_atom_v);
}

void on_rebalance(manager_state& st) {
  if (!st.cfg.elsewhere)
    return;
  for (auto& [key, e] : st.entities)
    if (!e.stopping() && st.cfg.elsewhere(key))
      passivate(e);
}

void on_exited(caf::scheduled_actor* self, manager_state& st, const std::string& key,
               const caf::actor_addr& entity, const caf::error& reason) {
  auto e = st.entities.find(key);
  // Only the current activation counts: a report from an activation already replaced changes
  // nothing (nor would the second of a down message and a report of the same exit).
  if (e == st.entities.end() || e->second.handle.address() != entity)
    return;
  st.keys.erase(e->second.handle.id()); // points at the key erased below
  st.cfg.counters->active.fetch_sub(1, std::memory_order_relaxed);
  if (e->second.stopping()) {
    st.cfg.counters->passivations.fetch_add(1, std::memory_order_relaxed);
  } else if (reason && reason != caf::exit_reason::normal) {
    st.cfg.counters->crashes.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("{} actor {} stopped: {}", st.cfg.kind, key, self->system().render(reason));
  }
  auto held = std::move(e->second.held);
  st.entities.erase(e);
  // Messages that waited for the old activation go to a fresh one, in arrival order (or to
  // the key's new owner, when the entity passivated because it moved).
  if (held)
    for (auto& [rp, msg] : *held)
      detail::dispatch(self, st, key, rp, std::move(msg));
}

void on_absent(manager_state& st, const std::string& key, const caf::actor_addr& entity) {
  // Only the current activation counts: a report from one already replaced is stale.
  auto it = st.entities.find(key);
  if (it != st.entities.end() && !it->second.stopping() && it->second.handle.address() == entity)
    passivate(it->second);
}

} // namespace detail

namespace {

/// Gives the memory the allocator holds free back to the operating system.
/// - The server runs on jemalloc (CMakeLists.txt: the executable alone links it), which returns
///   freed pages by itself only as it is called (its decay advances with allocations), so a
///   node that went quiet after a burst kept them: it is asked to purge every arena.
/// - Elsewhere (the tests, a build without jemalloc) glibc keeps freed chunks in its arenas
///   until malloc_trim walks them.
void give_back_memory() {
  // "arena.<MALLCTL_ARENAS_ALL>.purge"; MALLCTL_ARENAS_ALL is 4096 in jemalloc 5.
  if (mallctl) {
    const int failed = mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    if (!failed)
      return;
    spdlog::warn("memory trimmer: jemalloc's purge failed (error {}); calling malloc_trim", failed);
  }
  malloc_trim(0);
}

struct trimmer_state {
  std::int64_t trimmed_at = 0; ///< passivations counted at the last trim
  static inline const char* name = "memory_trimmer";
};

std::int64_t rss_kib() {
  std::ifstream statm{"/proc/self/statm"};
  std::int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

caf::behavior memory_trimmer(caf::stateful_actor<trimmer_state>* self,
                             std::vector<std::shared_ptr<kind_counters>> kinds,
                             caf::timespan period, std::int64_t threshold) {
  self->delayed_send(self, period, sweep_atom_v);
  return {
    [self, kinds, period, threshold](sweep_atom) {
      std::int64_t passivated = 0;
      for (const auto& k : kinds)
        passivated += k->passivations.load(std::memory_order_relaxed);
      if (passivated - self->state.trimmed_at >= threshold) {
        self->state.trimmed_at = passivated;
        auto before = rss_kib();
        give_back_memory();
        spdlog::debug("memory trimmer: {} passivations since the last trim; RSS {} -> {} MiB",
                      passivated, before / 1024, rss_kib() / 1024);
      }
      self->delayed_send(self, period, sweep_atom_v);
    },
  };
}

} // namespace

void report_absent(const caf::actor_addr& manager, const std::string& key,
                   const caf::actor_addr& entity) {
  if (auto m = caf::actor_cast<caf::actor>(manager))
    caf::anon_send(m, absent_atom_v, key, entity);
}

void report_exit(const caf::actor_addr& manager, const std::string& key,
                 const caf::actor_addr& entity, const caf::error& reason) {
  if (auto m = caf::actor_cast<caf::actor>(manager))
    caf::anon_send(m, exited_atom_v, key, entity, reason);
}

caf::actor spawn_memory_trimmer(caf::actor_system& sys,
                                std::vector<std::shared_ptr<kind_counters>> kinds,
                                caf::timespan period, std::int64_t threshold) {
  return sys.spawn<caf::detached>(memory_trimmer, std::move(kinds), period, threshold);
}

} // namespace emporium::actors
