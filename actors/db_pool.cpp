#include "actors/db_pool.hpp"

#include "actors/placement_committer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <limits>

namespace emporium::actors {
namespace {
/// A database worker's reminder to run the batch it holds.
struct run_held_batch {};
} // namespace
} // namespace emporium::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::run_held_batch)

namespace emporium::actors {

namespace {

/// A batchable job (make_batch_job) held until its batch runs.
struct held_job {
  db_job job;
  caf::response_promise rp;
};

struct worker_state {
  std::unique_ptr<persistence::backend> backend;
  std::shared_ptr<std::atomic<int>> queued;
  std::shared_ptr<pool_counters> counters;
  /// Batchable jobs, in the order they came: of one kind or of several, but then never one
  /// entity's jobs of two kinds (held_may_join).
  std::vector<held_job> held;
  bool reminder_sent = false;
  static inline const char* name = "db_worker";
};

using worker_ptr = caf::stateful_actor<worker_state>*;

void deliver(caf::response_promise& rp, caf::message answer) {
  if (answer.match_elements<caf::error>())
    rp.deliver(answer.get_as<caf::error>(0));
  else
    rp.deliver(std::move(answer));
}

/// Why `job`, taken from the queue now, must not run: it expired there.
std::optional<caf::message> expired(const db_job& job) {
  if (std::chrono::steady_clock::now() <= job.deadline)
    return std::nullopt;
  if (job.shed_when_late)
    return caf::make_message(
      make_domain_error(errc::unavailable, "the server is busy; retry shortly"));
  return caf::make_message(
    make_domain_error(errc::timeout, "the request expired while queued for the database"));
}

caf::message unavailable() {
  return caf::make_message(
    make_domain_error(errc::unavailable, "PostgreSQL is unavailable; retry shortly"));
}

/// Runs `work` (the database work of one job or of a batch) until it succeeds or
/// after_failed_attempt gives up; `deadline`: the earliest of the jobs'.
template <class Work>
auto with_retries(worker_state& st, std::chrono::steady_clock::time_point deadline, Work work)
  -> result<decltype(work())> {
  auto& breaker = st.counters->breaker;
  for (int attempt = 1;; ++attempt) {
    bool was_connected = st.backend->pg.connected();
    try {
      auto answer = work();
      breaker.on_success();
      return answer;
    } catch (const std::exception& e) {
      auto f = after_failed_attempt(*st.backend, *st.counters, e, was_connected, attempt, deadline);
      if (!f)
        continue;
      if (f->code == errc::internal)
        spdlog::error("database job failed: {}", e.what());
      return std::move(*f);
    }
  }
}

caf::message failure_message(const failure& f) {
  return caf::make_message(make_domain_error(f.code, f.detail, f.errors));
}

/// Runs one job that has not expired and that the breaker let through.
caf::message run_job(worker_state& st, const db_job& job) {
  auto answer = with_retries(st, job.deadline, [&] { return job.run(*st.backend); });
  if (!answer)
    return failure_message(answer.error());
  return std::move(answer.value());
}

/// Ends one held job: counted out of the worker's queue, answered.
void finish(worker_state& st, held_job& h, caf::message answer) {
  st.queued->fetch_sub(1, std::memory_order_relaxed);
  deliver(h.rp, std::move(answer));
}

/// Runs `group`, jobs of one kind (or one job that does not batch): one call of their batch
/// function for every job that has not expired; each job alone (run_job) when that call failed
/// other than by PostgreSQL being unavailable.
void run_group(worker_state& st, const std::vector<held_job*>& group) {
  std::vector<held_job*> live;
  for (auto* h : group) {
    if (auto late = expired(h->job))
      finish(st, *h, std::move(*late));
    else
      live.push_back(h);
  }
  if (live.empty())
    return;
  if (!st.counters->breaker.allow()) {
    for (auto* h : live)
      finish(st, *h, unavailable());
    return;
  }
  const auto n = static_cast<int>(live.size());
  st.counters->in_use.fetch_add(n, std::memory_order_relaxed);
  st.counters->jobs.fetch_add(n, std::memory_order_relaxed);
  if (live.front()->job.batch) {
    st.counters->batches.fetch_add(1, std::memory_order_relaxed);
    st.counters->batched_jobs.fetch_add(n, std::memory_order_relaxed);
  }
  auto done = caf::detail::make_scope_guard(
    [&st, n] { st.counters->in_use.fetch_sub(n, std::memory_order_relaxed); });
  if (live.size() == 1)
    return finish(st, *live.front(), run_job(st, live.front()->job));
  std::vector<const db_job*> jobs;
  auto earliest = live.front()->job.deadline;
  for (auto* h : live) {
    jobs.push_back(&h->job);
    earliest = std::min(earliest, h->job.deadline);
  }
  auto batch = jobs.front()->batch;
  auto answers = with_retries(st, earliest, [&] { return batch(*st.backend, jobs); });
  if (answers) {
    for (std::size_t i = 0; i < live.size(); ++i)
      finish(st, *live[i], std::move(answers.value()[i]));
    return;
  }
  if (answers.error().code == errc::unavailable) {
    for (auto* h : live)
      finish(st, *h, failure_message(answers.error()));
    return;
  }
  for (auto* h : live)
    finish(st, *h, run_job(st, h->job));
}

/// Runs what the worker holds, if anything: each kind's jobs as one group (run_group), the kinds
/// in the order their first jobs came.
void run_held(worker_ptr self) {
  auto& st = self->state;
  if (st.held.empty())
    return;
  auto held = std::move(st.held);
  st.held.clear();
  st.counters->waiting.fetch_sub(static_cast<int>(held.size()), std::memory_order_relaxed);
  std::vector<std::vector<held_job*>> groups;
  for (auto& h : held) {
    auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& group) {
      return group.front()->job.batch == h.job.batch;
    });
    if (g == groups.end())
      groups.push_back({&h});
    else
      g->push_back(&h);
  }
  for (const auto& group : groups)
    run_group(st, group);
}

/// Whether `job` may be held beside the held jobs: run_held reorders jobs of different kinds,
/// which is safe for different entities only. A job without a key is any entity.
bool held_may_join(const worker_state& st, const db_job& job) {
  return std::none_of(st.held.begin(), st.held.end(), [&](const held_job& h) {
    return h.job.batch != job.batch
           && (job.key.empty() || h.job.key.empty() || h.job.key == job.key);
  });
}

caf::behavior db_worker(worker_ptr self, config::settings settings,
                        std::shared_ptr<std::atomic<int>> queued,
                        std::shared_ptr<pool_counters> counters) {
  self->state.backend = std::make_unique<persistence::backend>(settings);
  self->state.queued = std::move(queued);
  self->state.counters = std::move(counters);
  return {
    [self](db_job& job) -> caf::result<caf::message> {
      auto& st = self->state;
      if (job.batch) {
        // Held until the reminder, which queues behind every job already in the mailbox: the
        // batchable jobs among them join it. An entity's job of another kind than its held one,
        // and any job that does not batch, runs the held ones first: nothing of one entity
        // overtakes anything of it.
        if (!held_may_join(st, job))
          run_held(self);
        auto rp = self->make_response_promise();
        st.held.push_back(held_job{std::move(job), rp});
        if (!st.reminder_sent) {
          st.reminder_sent = true;
          self->send(self, run_held_batch{});
        }
        return rp;
      }
      run_held(self);
      // A job that does not batch runs now, as a group of its own. (`queued` counts this
      // worker's jobs until they end, running included, so that any_within() spreads concurrent
      // jobs over idle workers rather than queueing them behind a running one.)
      st.counters->waiting.fetch_sub(1, std::memory_order_relaxed);
      held_job alone{std::move(job), self->make_response_promise()};
      run_group(st, {&alone});
      return alone.rp;
    },
    [self](run_held_batch) {
      self->state.reminder_sent = false;
      run_held(self);
    },
  };
}

struct fake_worker_state {
  std::deque<caf::response_promise> held; ///< jobs the answerer left unanswered, oldest first
  static inline const char* name = "fake_db_worker";
};

/// A worker of the test constructor: no database, `answer` decides.
caf::behavior fake_worker(caf::stateful_actor<fake_worker_state>* self, job_answerer answer,
                          std::string key) {
  self->set_default_handler(
    [self](caf::scheduled_actor*, caf::message_view& view) -> caf::result<caf::message> {
      auto& held = self->state.held;
      auto msg = view.move_content_to_message();
      if (held.empty() || !msg.match_elements<std::string, caf::message>()
          || msg.get_as<std::string>(0) != "answer")
        return caf::make_error(caf::sec::unexpected_message);
      deliver(held.front(), msg.get_as<caf::message>(1));
      held.pop_front();
      return caf::message{};
    });
  return {
    [self, answer, key](const db_job& job) -> caf::result<caf::message> {
      auto rp = self->make_response_promise();
      if (auto a = answer(key, job))
        deliver(rp, std::move(*a));
      else
        self->state.held.push_back(rp);
      return rp;
    },
  };
}

} // namespace

std::optional<failure> after_failed_attempt(persistence::backend& b, pool_counters& counters,
                                            const std::exception& e, bool was_connected,
                                            int attempt,
                                            std::chrono::steady_clock::time_point deadline) {
  bool broke = persistence::breaks_connection(e);
  if (broke)
    b.pg.drop();
  // A connection that died mid-transaction rolled it back: it may run again on a fresh one.
  bool lost_mid_transaction = broke && was_connected
                              && !dynamic_cast<const pqxx::in_doubt_error*>(&e);
  if ((persistence::is_retryable(e) || lost_mid_transaction) && attempt < 3
      && std::chrono::steady_clock::now() + std::chrono::milliseconds(50) < deadline) {
    counters.retries.fetch_add(1, std::memory_order_relaxed);
    persistence::backoff_sleep(attempt);
    return std::nullopt;
  }
  auto f = persistence::to_failure(e);
  if (f.code == errc::unavailable)
    counters.breaker.on_failure();
  else
    counters.breaker.on_success(); // the database answered; the request was at fault
  return f;
}

db_pool::db_pool(caf::actor_system& sys, const config::settings& s, int size, pool_lanes lanes)
  : counters_(std::make_shared<pool_counters>(s)),
    sys_(&sys),
    settings_(std::make_shared<const config::settings>(s)) {
  auto spawn_worker = [&] {
    auto queued = std::make_shared<std::atomic<int>>(0);
    auto h = sys.spawn<caf::detached>(db_worker, s, queued, counters_);
    return worker{std::move(h), std::move(queued)};
  };
  for (int i = 0; i < (size > 0 ? size : s.postgres.pool_size); ++i)
    workers_.push_back(spawn_worker());
  if (lanes == pool_lanes::own)
    for (std::size_t i = 0; i < db_lane_count; ++i)
      lanes_.push_back(spawn_worker());
}

db_pool::db_pool(caf::actor_system& sys, const config::settings& s, job_answerer answer)
  : counters_(std::make_shared<pool_counters>(s)), fake_(std::move(answer)), sys_(&sys) {}

const caf::actor& db_pool::fake_for(const std::string& key) const {
  auto& h = fake_workers_[key];
  if (!h)
    h = sys_->spawn(fake_worker, fake_, key);
  return h;
}

const caf::actor& db_pool::take(const worker& w) const {
  w.queued->fetch_add(1, std::memory_order_relaxed);
  counters_->waiting.fetch_add(1, std::memory_order_relaxed);
  return w.handle;
}

const caf::actor& db_pool::for_key(const std::string& key) const {
  if (fake_)
    return fake_for(key);
  return take(workers_[std::hash<std::string>{}(key) % workers_.size()]);
}

const caf::actor& db_pool::for_lane(db_lane lane, const std::string& key) const {
  if (fake_)
    return fake_for(key);
  return take(lanes_.at(static_cast<std::size_t>(lane)));
}

const caf::actor& db_pool::any() const {
  return *any_within(std::numeric_limits<int>::max());
}

const caf::actor* db_pool::any_within(int limit) const {
  if (fake_)
    return &fake_for("");
  if (counters_->waiting.fetch_add(1, std::memory_order_relaxed) >= limit) {
    counters_->waiting.fetch_sub(1, std::memory_order_relaxed);
    return nullptr;
  }
  const worker* best = &workers_.front();
  for (const auto& w : workers_)
    if (w.queued->load(std::memory_order_relaxed) < best->queued->load(std::memory_order_relaxed))
      best = &w;
  best->queued->fetch_add(1, std::memory_order_relaxed);
  return &best->handle;
}

const caf::actor* db_pool::placer() const {
  if (fake_)
    return nullptr;
  std::call_once(placer_once_,
                 [this] { placer_ = spawn_placement_committer(*sys_, *settings_, counters_); });
  return &placer_;
}

std::vector<caf::actor> db_pool::stop() {
  // Once stopping, no committer is spawned any more.
  std::call_once(placer_once_, [] {});
  std::vector<caf::actor> stopped;
  if (placer_) {
    caf::anon_send_exit(placer_, caf::exit_reason::user_shutdown);
    stopped.push_back(placer_);
  }
  for (auto* ws : {&workers_, &lanes_})
    for (auto& w : *ws) {
      caf::anon_send_exit(w.handle, caf::exit_reason::user_shutdown);
      stopped.push_back(w.handle);
    }
  for (auto& [key, h] : fake_workers_) {
    caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    stopped.push_back(h);
  }
  return stopped;
}

} // namespace emporium::actors
