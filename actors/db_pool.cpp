#include "actors/db_pool.hpp"

#include "actors/placement_committer.hpp"

#include <spdlog/spdlog.h>

#include <deque>
#include <functional>
#include <limits>

namespace emporium::actors {

namespace {

struct worker_state {
  std::unique_ptr<persistence::backend> backend;
  std::shared_ptr<std::atomic<int>> queued;
  std::shared_ptr<pool_counters> counters;
  static inline const char* name = "db_worker";
};

caf::behavior db_worker(caf::stateful_actor<worker_state>* self, config::settings settings,
                        std::shared_ptr<std::atomic<int>> queued,
                        std::shared_ptr<pool_counters> counters) {
  self->state.backend = std::make_unique<persistence::backend>(settings);
  self->state.queued = std::move(queued);
  self->state.counters = std::move(counters);
  return {
    [self](db_job& job) -> caf::result<caf::message> {
      auto& st = self->state;
      // `queued` counts this worker's jobs until they end (running included), so that
      // any_within() spreads concurrent jobs over idle workers rather than queueing them
      // behind a running one.
      auto done = caf::detail::make_scope_guard(
        [&st] { st.queued->fetch_sub(1, std::memory_order_relaxed); });
      st.counters->waiting.fetch_sub(1, std::memory_order_relaxed);
      if (std::chrono::steady_clock::now() > job.deadline) {
        if (job.shed_when_late)
          return make_domain_error(errc::unavailable, "the server is busy; retry shortly");
        return make_domain_error(errc::timeout,
                                 "the request expired while queued for the database");
      }
      auto& breaker = st.counters->breaker;
      if (!breaker.allow())
        return make_domain_error(errc::unavailable, "PostgreSQL is unavailable; retry shortly");
      st.counters->in_use.fetch_add(1, std::memory_order_relaxed);
      st.counters->jobs.fetch_add(1, std::memory_order_relaxed);
      caf::message answer;
      for (int attempt = 1;; ++attempt) {
        bool was_connected = st.backend->pg.connected();
        try {
          answer = job.run(*st.backend);
          breaker.on_success();
          break;
        } catch (const std::exception& e) {
          auto f = after_failed_attempt(*st.backend, *st.counters, e, was_connected, attempt,
                                        job.deadline);
          if (!f)
            continue;
          if (f->code == errc::internal)
            spdlog::error("database job failed: {}", e.what());
          answer = caf::make_message(make_domain_error(f->code, f->detail, f->errors));
          break;
        }
      }
      st.counters->in_use.fetch_sub(1, std::memory_order_relaxed);
      if (answer.match_elements<caf::error>())
        return answer.get_as<caf::error>(0);
      return answer;
    },
  };
}

struct fake_worker_state {
  std::deque<caf::response_promise> held; ///< jobs the answerer left unanswered, oldest first
  static inline const char* name = "fake_db_worker";
};

void deliver(caf::response_promise& rp, caf::message answer) {
  if (answer.match_elements<caf::error>())
    rp.deliver(answer.get_as<caf::error>(0));
  else
    rp.deliver(std::move(answer));
}

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

db_pool::db_pool(caf::actor_system& sys, const config::settings& s, int size)
  : counters_(std::make_shared<pool_counters>(s)),
    sys_(&sys),
    settings_(std::make_shared<const config::settings>(s)) {
  for (int i = 0; i < (size > 0 ? size : s.postgres.pool_size); ++i) {
    auto queued = std::make_shared<std::atomic<int>>(0);
    auto h = sys.spawn<caf::detached>(db_worker, s, queued, counters_);
    workers_.push_back(worker{std::move(h), std::move(queued)});
  }
}

db_pool::db_pool(caf::actor_system& sys, const config::settings& s, job_answerer answer)
  : counters_(std::make_shared<pool_counters>(s)), fake_(std::move(answer)), sys_(&sys) {}

const caf::actor& db_pool::fake_for(const std::string& key) const {
  auto& h = fake_workers_[key];
  if (!h)
    h = sys_->spawn(fake_worker, fake_, key);
  return h;
}

const caf::actor& db_pool::for_key(const std::string& key) const {
  if (fake_)
    return fake_for(key);
  auto& w = workers_[std::hash<std::string>{}(key) % workers_.size()];
  w.queued->fetch_add(1, std::memory_order_relaxed);
  counters_->waiting.fetch_add(1, std::memory_order_relaxed);
  return w.handle;
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
  for (auto& w : workers_) {
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
