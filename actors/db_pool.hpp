#pragma once
/// Blocking workers: `postgres.pool_size` detached actors, each on its own thread with its own
/// PostgreSQL connection and Redis client. libpqxx and hiredis calls happen here and nowhere
/// else, so CAF's scheduler threads and the Asio threads never block on I/O.
///
/// Jobs for one entity always go to the same worker (by hash of the key), so they run in the
/// order the entity sent them: a reload that follows a write whose answer timed out cannot
/// overtake that write. Other jobs go to the least busy worker.

#include "actors/types.hpp"
#include "config/settings.hpp"
#include "persistence/backend.hpp"
#include "persistence/breaker.hpp"

#include <atomic>
#include <memory>
#include <type_traits>
#include <vector>

namespace emporium::actors {

/// Counters read by /metrics and tests.
struct pool_counters {
  explicit pool_counters(const config::settings& s)
    : breaker("PostgreSQL", s.postgres.breaker_threshold,
              std::chrono::milliseconds(s.postgres.breaker_open_ms)) {}
  std::atomic<int> in_use{0};  ///< jobs running now
  std::atomic<int> waiting{0}; ///< jobs queued behind them
  std::atomic<std::int64_t> retries{0};
  /// Shared by the pool's workers: once PostgreSQL is known down, jobs fail at once (503)
  /// instead of each waiting for a connect timeout; one probe per open period tries again.
  persistence::circuit_breaker breaker;
};

class db_pool {
 public:
  /// `size` workers (default: postgres.pool_size).
  db_pool(caf::actor_system& sys, const config::settings& s, int size = 0);

  /// The worker that owns the entity `key`'s jobs.
  const caf::actor& for_key(const std::string& key) const;

  /// The worker with the fewest jobs queued or running.
  const caf::actor& any() const;

  /// As any(), or nullptr when `limit` jobs already wait in the pool: for work that must be
  /// refused (503) rather than queued without bound.
  const caf::actor* any_within(int limit) const;

  /// Sends each worker an exit message.
  void stop();

  const pool_counters& counters() const { return *counters_; }
  pool_counters& counters() { return *counters_; }

  std::size_t size() const { return workers_.size(); }

 private:
  struct worker {
    caf::actor handle;
    std::shared_ptr<std::atomic<int>> queued; ///< jobs sent to it and not yet ended
  };
  std::vector<worker> workers_;
  std::shared_ptr<pool_counters> counters_;
  friend struct db_call;
};

/// Wraps a `result<T>(persistence::backend&)` function into a job whose answer is `T` or a
/// domain error. Exceptions become failures (see persistence::to_failure).
///
/// A job may run more than once: the worker runs it again on a fresh connection after the old
/// one was lost mid-transaction, and after a serialization failure. So a job must not change
/// what it captured (a password wiped after the first attempt would be hashed as NUL bytes by
/// the second): `fn` is called as const, and a `mutable` lambda does not compile here. Secrets
/// travel as core::secret, wiped when the job is destroyed after its last attempt.
template <class Fn>
db_job make_job(Fn fn, caf::timespan timeout) {
  static_assert(std::is_invocable_v<const Fn&, persistence::backend&>,
                "a database job must be callable as const: it may run more than once");
  db_job job;
  job.deadline = std::chrono::steady_clock::now() + timeout;
  job.run = [fn = std::move(fn)](persistence::backend& b) -> caf::message {
    auto r = fn(b);
    if (!r)
      return caf::make_message(
        make_domain_error(r.error().code, r.error().detail, r.error().errors));
    return caf::make_message(std::move(r.value()));
  };
  return job;
}

} // namespace emporium::actors
