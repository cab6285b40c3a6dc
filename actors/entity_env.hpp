#pragma once
/// What the entity actors (product, customer, cart, order) and the commerce services (payment
/// sweeper, retention) share, and the small helpers every entity uses: its activation, its
/// awaited database jobs, its absent and passivate handlers.

#include "actors/db_pool.hpp"
#include "actors/deadlines.hpp"
#include "actors/directory.hpp"
#include "actors/interfaces.hpp"
#include "actors/manager.hpp"
#include "actors/payment_provider.hpp"
#include "config/settings.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <type_traits>

namespace emporium::actors {

class product_registry;

/// Owned by the runtime; outlives every actor.
struct entity_env {
  db_pool* pool = nullptr;
  const directory* dir = nullptr;
  const config::settings* settings = nullptr;
  std::shared_ptr<payment_provider> payments;
  caf::timespan db_timeout{};   ///< deadline of one database job
  caf::timespan call_timeout{}; ///< one request to another entity
  /// Where the payment provider is called (blocking, like the database).
  db_pool* payment_workers = nullptr;
  /// A stock hold not confirmed or released within this time is given back (its order died).
  caf::timespan hold_ttl = std::chrono::seconds(30);
  caf::actor_addr manager; ///< the manager that spawned this entity (set by its factory)
  /// The node's product snapshots: product actors publish there, orders update the stock.
  product_registry* snapshots = nullptr;
  /// Keeps the deadlines of the entity's requests (request_within); none in the unit tests on
  /// CAF's deterministic coordinator, where CAF's simulated clock keeps them.
  deadline_keeper* deadlines = nullptr;
  /// Set for an entity kind whose database jobs all go to its lane (db_pool.hpp), else each
  /// entity's go to its worker by key.
  std::optional<db_lane> lane;
};

inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// Another customer's resource is answered as absent: its id leaks nothing.
inline bool may_see(const model::principal& who, const std::string& owner) {
  return who.admin || (!who.customer_id.empty() && who.customer_id == owner);
}

inline caf::error absent(const char* what, const std::string& id) {
  return make_domain_error(errc::not_found, std::string{what} + " " + id + " does not exist");
}

/// Runs the database job `job` for the entity `key` on its worker; other messages wait
/// meanwhile.
template <class T, class Self, class OnOk, class OnErr>
void db_await_job(Self* self, const entity_env& env, const std::string& key, db_job job, OnOk ok,
                  OnErr err) {
  const auto& worker = env.lane ? env.pool->for_lane(*env.lane, key) : env.pool->for_key(key);
  job.key = key;
  request_within(self, env.deadlines, worker, env.db_timeout, std::move(job))
    .await([ok](T& x) mutable { ok(x); }, [err](caf::error& e) mutable { err(e); });
}

/// Runs a blocking job for the entity `key` on its worker; other messages wait meanwhile.
template <class T, class Self, class Fn, class OnOk, class OnErr>
void db_await(Self* self, const entity_env& env, const std::string& key, Fn fn, OnOk ok,
              OnErr err) {
  db_await_job<T>(self, env, key, make_job(std::move(fn), env.db_timeout), std::move(ok),
                  std::move(err));
}

/// Activation: loads the entity with `fn` (on its own worker) before any message is handled;
/// `set` receives it. A failed load stops the actor, and the next message re-activates it.
template <class T, class Self, class Fn, class Set>
void load_then(Self* self, const entity_env& env, const std::string& key, Fn fn, Set set) {
  db_await<T>(
    self, env, key, std::move(fn), [set](T& x) mutable { set(std::move(x)); },
    [self](caf::error& err) { self->quit(std::move(err)); });
}

/// The entity's handler of `absent_atom` (see interfaces.hpp): when `empty()` still holds, it
/// asks its manager to passivate it.
template <class Self, class Empty>
auto absent_handler(Self* self, const entity_env& env, Empty empty) {
  return [self, manager = env.manager, empty](absent_atom) {
    if (empty())
      report_absent(manager, self->state.id, self->address());
  };
}

/// The entity's handler of `passivate_atom`, from its manager.
template <class Self>
auto passivate_handler(Self* self) {
  return [self](passivate_atom) { self->quit(); };
}

/// An environment shared by every entity of a kind, for entities that take theirs this way: one
/// copy instead of one per entity (and per handler that captures it), alive while any of them is.
using shared_env = std::shared_ptr<const entity_env>;

namespace detail {

/// A factory that spawns with `spawn(self, env, key, fresh)`, `env` being the kind's shared_env
/// with its manager, made by the first call, when the manager (the caller) is known; only it
/// calls this.
template <class Spawn>
entity_factory shared_env_factory(Spawn spawn, entity_env env) {
  return [spawn, env, shared = shared_env{}](caf::local_actor* self, const std::string& key,
                                             bool fresh) mutable {
    if (!shared) {
      auto own = env;
      own.manager = self->address();
      shared = std::make_shared<const entity_env>(std::move(own));
    }
    return spawn(self, shared, key, fresh);
  };
}

} // namespace detail

/// The factory a manager spawns entities of kind `fn` with: each gets `env` with its manager,
/// as a copy of its own, or as the kind's shared_env when `fn` takes one; and whether it starts
/// fresh, when `fn` takes that (kinds with a message that creates them, creates_entity).
template <class Fn>
entity_factory entity_factory_of(Fn fn, entity_env env) {
  auto spawn = [fn](caf::local_actor* self, auto env_arg, const std::string& key, bool fresh) {
    if constexpr (std::is_invocable_v<Fn, std::nullptr_t, decltype(env_arg), std::string, bool>)
      return caf::actor_cast<caf::actor>(self->spawn(fn, std::move(env_arg), key, fresh));
    else
      return caf::actor_cast<caf::actor>(self->spawn(fn, std::move(env_arg), key));
  };
  if constexpr (std::is_invocable_v<Fn, std::nullptr_t, shared_env, std::string>) {
    return detail::shared_env_factory(spawn, std::move(env));
  } else {
    return [spawn, env](caf::local_actor* self, const std::string& key, bool fresh) {
      auto own = env;
      own.manager = self->address();
      return spawn(self, std::move(own), key, fresh);
    };
  }
}

/// The same for a kind written as a class (shared_behavior.hpp), constructed with the kind's
/// shared_env and its key.
template <class Entity>
entity_factory entity_factory_of(entity_env env) {
  return detail::shared_env_factory(
    [](caf::local_actor* self, const shared_env& shared, const std::string& key, bool) {
      return caf::actor_cast<caf::actor>(self->spawn<Entity>(shared, key));
    },
    std::move(env));
}

} // namespace emporium::actors
