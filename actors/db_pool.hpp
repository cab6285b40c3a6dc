#pragma once
/// Blocking workers: `postgres.pool_size` detached actors, each on its own thread with its own
/// PostgreSQL connection and Redis client. libpqxx and hiredis calls happen here and nowhere
/// else, so CAF's scheduler threads and the Asio threads never block on I/O.
///
/// Jobs for one entity always go to the same worker (by hash of the key), so they run in the
/// order the entity sent them: a reload that follows a write whose answer timed out cannot
/// overtake that write. Other jobs go to the least busy worker.
///
/// Batches: the small writes every order makes (a cart's creation and its saves, the order's
/// payment intent and its payment's record), and the loads of products activating, are jobs of
/// a kind (make_batch_job) that a worker holds until a reminder it sends itself, which queues
/// behind every job already in its mailbox. The jobs held by then run as one set-based
/// statement per kind: one round trip (and, for writes, one commit) for all of them instead of
/// one each. On this machine the round trip and the commit, not the statement, are most of
/// what PostgreSQL spends on such a write. Order is kept where it matters: any job that does
/// not batch runs what is held first, and so does an entity's job of another kind than a job
/// of it held (kinds run one after another, so only different entities' jobs change places).
///
/// Lanes: batches form only where such jobs queue behind each other, which jobs spread over
/// every worker by key seldom do. So every job of an entity kind whose frequent jobs all batch
/// (carts, orders, and products, whose activations' loads batch) goes to one worker of its own,
/// its lane (db_lane; one more connection each), and an entity's jobs still run in the order
/// it sent them.

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
  /// Runs of held batchable jobs: one statement for all of them (or one job alone), so that
  /// jobs of those kinds / batches is the batches' mean size.
  std::atomic<std::int64_t> batches{0};
  std::atomic<std::int64_t> batched_jobs{0}; ///< the jobs of those runs
  /// Shared by the pool's workers: once PostgreSQL is known down, jobs fail at once (503)
  /// instead of each waiting for a connect timeout; one probe per open period tries again.
  persistence::circuit_breaker breaker;
};

/// A test double of the database: the answer to the job for entity `key` ("" for any()), or
/// nothing to hold the job until the worker is sent its answer (or forever: the caller's request
/// then times out). `job.answers` tells which job it is; its closure is not called.
using job_answerer =
  std::function<std::optional<caf::message>(const std::string& key, const db_job& job)>;

/// The entity kinds whose database jobs go to a worker of their own (see the top).
enum class db_lane : std::uint8_t { carts, orders, products };
inline constexpr std::size_t db_lane_count = 3;

/// Whether a pool has the lanes: the node's main pool does; the side pools (sign-ups, logins,
/// search, payments) take no entity's jobs and would only hold three idle threads each.
enum class pool_lanes : bool { none, own };

class db_pool {
 public:
  /// `size` workers (default: postgres.pool_size), and the lanes when `lanes` is own.
  db_pool(caf::actor_system& sys, const config::settings& s, int size = 0,
          pool_lanes lanes = pool_lanes::own);

  /// Workers without a database, for unit tests of actors: every key gets a worker of its own,
  /// spawned on first use as a scheduled actor (so CAF's test coordinator runs it like any other
  /// actor), which hands each job to `answer`. The message ("answer", m) sent to the worker
  /// (for_key(key)) answers its oldest held job with m. An m holding one caf::error answers as
  /// that error. Single-threaded use only.
  db_pool(caf::actor_system& sys, const config::settings& s, job_answerer answer);

  /// The worker that owns the entity `key`'s jobs.
  const caf::actor& for_key(const std::string& key) const;

  /// The worker of lane `lane`, which runs every job of the entities of its kind (`key`: the
  /// entity, for the test double, which answers by key). Only on a pool with its lanes.
  const caf::actor& for_lane(db_lane lane, const std::string& key) const;

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
  /// `w`, counted as having one more job queued.
  const caf::actor& take(const worker& w) const;

  std::vector<worker> workers_;
  std::vector<worker> lanes_; ///< by db_lane
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

/// The message a job answers for `r`: its value, or its failure as a domain error.
template <class T>
caf::message answer_message(result<T>&& r) {
  if (!r)
    return caf::make_message(make_domain_error(r.error().code, r.error().detail, r.error().errors));
  return caf::make_message(std::move(r.value()));
}

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
    return answer_message(fn(b));
  };
  return job;
}

/// A batch statement's rows as its jobs' answers: each row, or `missing` where there is none.
template <class T>
std::vector<result<T>> answers_or(std::vector<std::optional<T>> rows, const failure& missing) {
  std::vector<result<T>> out;
  for (auto& row : rows) {
    if (row)
      out.emplace_back(std::move(*row));
    else
      out.emplace_back(missing);
  }
  return out;
}

namespace detail {

template <auto Run, class Input>
std::vector<caf::message> run_batch(persistence::backend& b,
                                    const std::vector<const db_job*>& batch) {
  std::vector<const Input*> inputs;
  inputs.reserve(batch.size());
  for (const auto* job : batch)
    inputs.push_back(std::any_cast<Input>(&job->input));
  auto results = Run(b, inputs);
  std::vector<caf::message> out;
  out.reserve(results.size());
  for (auto& r : results)
    out.push_back(answer_message(std::move(r)));
  return out;
}

} // namespace detail

/// A job of a kind a worker may batch (see the top of this file). `Run` is a function
/// `std::vector<result<T>> (persistence::backend&, const std::vector<const Input*>&)` that does
/// the work of all its inputs, in as few statements as it can, and answers each one in order.
/// What make_job asks of a job it asks of `Run` too, for each input: it may run more than once.
/// A job runs through `Run` with its own input alone when nothing of its kind is queued behind
/// it, and again when the batch it was in failed for a reason other than the database being
/// unreachable (a constraint one input broke fails the statement of all: alone, each of the
/// others succeeds and only that one fails).
template <auto Run, class Input>
db_job make_batch_job(Input input, caf::timespan timeout) {
  using answer =
    std::decay_t<decltype(std::declval<std::invoke_result_t<decltype(Run), persistence::backend&,
                                                            const std::vector<const Input*>&>&>()
                            .front()
                            .value())>;
  db_job job;
  job.deadline = std::chrono::steady_clock::now() + timeout;
  job.answers = &typeid(answer);
  job.batch = &detail::run_batch<Run, Input>;
  job.run = [input](persistence::backend& b) -> caf::message {
    return answer_message(std::move(Run(b, {&input}).front()));
  };
  job.input = std::move(input);
  return job;
}

} // namespace emporium::actors
