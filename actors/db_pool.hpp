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
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
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
  std::atomic<std::int64_t> jobs{0}; ///< jobs run (each counted once, however often retried)
  /// Shared by the pool's workers: once PostgreSQL is known down, jobs fail at once (503)
  /// instead of each waiting for a connect timeout; one probe per open period tries again.
  persistence::circuit_breaker breaker;
};

/// A test double of the database: the answer to the job for entity `key` ("" for any()), or
/// nothing to hold the job until the worker is sent its answer (or forever: the caller's request
/// then times out). `job.answers` tells which job it is; its closure is not called.
using job_answerer =
  std::function<std::optional<caf::message>(const std::string& key, const db_job& job)>;

class db_pool {
 public:
  /// `size` workers (default: postgres.pool_size).
  db_pool(caf::actor_system& sys, const config::settings& s, int size = 0);

  /// Workers without a database, for unit tests of actors: every key gets a worker of its own,
  /// spawned on first use as a scheduled actor (so CAF's test coordinator runs it like any other
  /// actor), which hands each job to `answer`. The message ("answer", m) sent to the worker
  /// (for_key(key)) answers its oldest held job with m. An m holding one caf::error answers as
  /// that error. Single-threaded use only.
  db_pool(caf::actor_system& sys, const config::settings& s, job_answerer answer);

  /// The worker that owns the entity `key`'s jobs.
  const caf::actor& for_key(const std::string& key) const;

  /// The worker with the fewest jobs queued or running.
  const caf::actor& any() const;

  /// As any(), or nullptr when `limit` jobs already wait in the pool: for work that must be
  /// refused (503) rather than queued without bound.
  const caf::actor* any_within(int limit) const;

  /// The node's placement committer (placement_committer.hpp), spawned at the first call with
  /// a PostgreSQL connection of its own; nullptr for the workers without a database of unit
  /// tests (their jobs then place each order alone).
  const caf::actor* placer() const;

  /// Sends each worker (and the committer) an exit message; returns them, for a caller that
  /// waits for their end.
  std::vector<caf::actor> stop();

  const pool_counters& counters() const { return *counters_; }
  pool_counters& counters() { return *counters_; }

  std::size_t size() const { return workers_.size(); }

 private:
  struct worker {
    caf::actor handle;
    std::shared_ptr<std::atomic<int>> queued; ///< jobs sent to it and not yet ended
  };
  const caf::actor& fake_for(const std::string& key) const;

  std::vector<worker> workers_;
  std::shared_ptr<pool_counters> counters_;
  /// Set by the test constructor only: then workers_ is empty and these answer every job.
  job_answerer fake_;
  caf::actor_system* sys_ = nullptr;
  mutable std::unordered_map<std::string, caf::actor> fake_workers_;
  std::shared_ptr<const config::settings> settings_; ///< for the committer
  mutable std::once_flag placer_once_;
  mutable caf::actor placer_;
  friend struct db_call;
};

/// What a database worker does after `e` ended attempt `attempt` of a transaction on `b` (the
/// pool's workers and the placement committer alike): drops a broken connection, and returns
/// nothing when the transaction may run again (a retryable error, or the connection lost before
/// COMMIT while under three attempts and 50 ms before `deadline`; the retry is counted and its
/// back-off slept here). Otherwise records the outcome on the breaker and returns the failure
/// to answer. A connection lost during COMMIT is in doubt (pqxx::in_doubt_error): never run
/// blindly again; the job's own keys (order id, idempotency key) let a later request find out.
/// `was_connected`: whether `b` had a connection when the attempt began (one that fails to
/// connect lost nothing).
std::optional<failure> after_failed_attempt(persistence::backend& b, pool_counters& counters,
                                            const std::exception& e, bool was_connected,
                                            int attempt,
                                            std::chrono::steady_clock::time_point deadline);

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
  using answer = std::decay_t<
    decltype(std::declval<std::invoke_result_t<const Fn&, persistence::backend&>&>().value())>;
  db_job job;
  job.deadline = std::chrono::steady_clock::now() + timeout;
  job.answers = &typeid(answer);
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
