#pragma once
/// The runtime's insides, shared by the files that implement the facade area by area
/// (runtime.cpp, runtime_products.cpp, ...). Internal to actors/.

#include "actors/caller.hpp"
#include "actors/cluster.hpp"
#include "actors/db_pool.hpp"
#include "actors/deadlines.hpp"
#include "actors/directory.hpp"
#include "actors/manager.hpp"
#include "actors/product_snapshot.hpp"
#include "actors/runtime.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <vector>

namespace emporium::actors {

namespace detail {

class system_config : public caf::actor_system_config {
 public:
  explicit system_config(const config::settings& s) {
    register_types(*this);
    configure_cluster(*this, s);
    set("scheduler.max-threads", static_cast<size_t>(s.actors.scheduler_threads));
    // An idle worker's polls before it waits on its condition variable (settings.hpp).
    set("work-stealing.moderate-poll-attempts", static_cast<size_t>(s.actors.scheduler_idle_polls));
    set("logger.verbosity", caf::atom("quiet"));
  }
};

} // namespace detail

struct runtime::impl {
  explicit impl(const config::settings& s)
    : settings(s),
      cfg(s),
      sys(cfg),
      pool(sys, s),
      timeout(std::chrono::milliseconds(s.http.request_timeout_ms)),
      db_timeout(std::chrono::milliseconds(s.postgres.statement_timeout_ms + 500)),
      product_counters(std::make_shared<kind_counters>()),
      customer_counters(std::make_shared<kind_counters>()),
      cart_counters(std::make_shared<kind_counters>()),
      order_counters(std::make_shared<kind_counters>()),
      // Password hashing is slow and memory-hard by design: workers of its own keep it from
      // queueing in front of database work, and sign-ups apart from logins keep a sign-up
      // flood from delaying logins (at most signup_workers cores go to sign-ups).
      signups(sys, s, s.auth.signup_workers, pool_lanes::none),
      logins(sys, s, s.auth.login_workers, pool_lanes::none),
      // Searches (tens of milliseconds each on a large catalog) get workers of their own, so
      // that a burst of them never queues in front of an entity's writes.
      search(sys, s, 0, pool_lanes::none),
      // The payment provider is a remote call that may back off for a while: workers of its
      // own keep it from holding a database worker. A slow provider wants more of them (each
      // holds one call at a time; the simulated one batches what a worker holds).
      payments(sys, s, s.orders.payment_workers, pool_lanes::none) {
    dir.set_self(config::node_name(s));
    start_products();
    start_commerce();
    start_feeds();
    if (s.cluster.node_port)
      services.push_back(start_cluster(sys, settings, dir, cluster, timeout, &deadlines));
    // 1,000 passivations is at least a few MB freed; every 10 s is often enough to follow a
    // passivation sweep (the managers sweep every idle/4, at most 15 s).
    services.push_back(spawn_memory_trimmer(
      sys, {product_counters, customer_counters, cart_counters, order_counters},
      std::chrono::seconds(10), 1'000));
  }

  /// Each area spawns its managers and services (runtime_products.cpp, ...).
  void start_products();
  void start_commerce(); ///< runtime_commerce.cpp
  /// The event hub (a service) and its LISTEN thread (runtime_feeds.cpp).
  void start_feeds();
  /// Stops the LISTEN thread and waits for it.
  void stop_feeds();
  feed_stats feed_snapshot() const;

  /// A manager's configuration: its kind, its entities, and where keys it does not own go.
  manager_config managed(std::string kind, entity_factory make,
                         std::shared_ptr<kind_counters> counters) {
    return {
      std::move(kind),
      std::move(make),
      std::chrono::seconds(settings.actors.idle_timeout_s),
      std::move(counters),
      [d = &dir](const std::string& key) { return caf::actor_cast<caf::actor>(d->elsewhere(key)); },
      cluster->moved,
      {}}; // used_since: set by the kinds whose entities are used without a message
  }

  /// Sends `msg` to `target` and hands the answer, or the failure, to `cb`: the one way the
  /// runtime asks an actor (through `calls`, no actor in between). For a typed handle (an
  /// entity's manager, from the directory) the answer's type follows from its interface and the
  /// message, and `cb` must take it; a database worker answers a db_job with whatever the job
  /// returns, so there `cb` says it.
  template <class Handle, class Msg, class T>
  void ask(const Handle& target, Msg msg, callback<T> cb) {
    if constexpr (caf::is_typed_actor<Handle>::value) {
      using answer = caf::response_type<typename Handle::signatures, Msg>;
      static_assert(std::is_same<typename answer::type, caf::detail::type_list<T>>::value,
                    "the callback must take what the handle's interface answers to the message");
    }
    calls.ask<T>(target, std::move(msg), timeout, std::move(cb));
  }

  /// Sends `job` to the least busy worker of `workers`, or answers 503 at once when `limit`
  /// jobs already wait there: work that is refused rather than queued without bound.
  /// The job waits at most half the request's time in the queue (or less, when its own
  /// deadline comes first), then answers 503 too: never a 504 for work that was not even
  /// started.
  template <class T>
  void call_bounded(const db_pool& workers, int limit, db_job job, callback<T> cb,
                    const char* what) {
    job.deadline = std::min(job.deadline, std::chrono::steady_clock::now() + timeout / 2);
    job.shed_when_late = true;
    auto* worker = workers.any_within(limit);
    if (!worker) {
      run_callback(
        cb,
        result<T>{failure{
          errc::unavailable, std::string{"too many "} + what + " are waiting; retry shortly", {}}});
      return;
    }
    ask(*worker, std::move(job), std::move(cb));
  }

  /// Runs a blocking job on the least busy database worker.
  template <class T, class Fn>
  void run_db(Fn fn, callback<T> cb, caf::timespan t) {
    ask(pool.any(), make_job(std::move(fn), t), std::move(cb));
  }

  void shutdown() {
    if (stopped.exchange(true))
      return;
    calls.stop();
    dir.for_each_manager(
      [](const caf::actor& m) { caf::anon_send_exit(m, caf::exit_reason::user_shutdown); });
    for (auto& svc : services)
      caf::anon_send_exit(svc, caf::exit_reason::user_shutdown);
    stop_feeds();
    if (dir.refuser())
      caf::anon_send_exit(dir.refuser(), caf::exit_reason::user_shutdown);
    pool.stop();
    signups.stop();
    logins.stop();
    search.stop();
    payments.stop();
    sys.await_all_actors_done();
  }

  /// runtime::stop_for_exit with many entities: stops every actor that is not an entity or a
  /// manager and waits for them (at most db_timeout: a worker finishes the job in hand first).
  /// The managers stay, idle: nothing sends them work any more.
  void stop_all_but_entities() {
    if (stopped.exchange(true))
      return;
    calls.stop();
    entities_left = true;
    std::vector<caf::actor> stopping = services;
    if (dir.refuser())
      stopping.push_back(caf::actor_cast<caf::actor>(dir.refuser()));
    for (auto* p : {&pool, &signups, &logins, &search, &payments}) {
      auto workers = p->stop();
      stopping.insert(stopping.end(), workers.begin(), workers.end());
    }
    stop_feeds();
    caf::scoped_actor self{sys};
    for (auto& a : stopping) {
      self->monitor(a);
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    }
    auto left = stopping.size();
    const auto until = std::chrono::steady_clock::now() + db_timeout;
    while (left > 0) {
      auto now = std::chrono::steady_clock::now();
      if (now >= until) {
        spdlog::warn("{} actors still running {} ms after the stop; exiting anyway", left,
                     std::chrono::duration_cast<std::chrono::milliseconds>(db_timeout).count());
        break;
      }
      self->receive([&](caf::down_msg&) { --left; },
                    caf::after(until - now) >> [] { /* the loop checks the deadline */ });
    }
  }

  config::settings settings;
  /// Before the actor system: product actors withdraw their snapshots as they stop, until the
  /// system is gone.
  product_registry snapshots;
  std::atomic<std::int64_t> snapshot_reads{
    0}; ///< answered from `snapshots` (runtime::current_product)
  detail::system_config cfg;
  caf::actor_system sys;
  /// After the actor system: stopped (its thread joined) before the system goes. Keeps the
  /// deadlines of `calls` and of the entities' requests.
  deadline_keeper deadlines;
  caller calls{sys, deadlines}; ///< the runtime's requests from non-actor threads
  db_pool pool;
  caf::timespan timeout;
  caf::timespan db_timeout;
  std::shared_ptr<kind_counters> product_counters;
  std::shared_ptr<kind_counters> customer_counters;
  std::shared_ptr<kind_counters> cart_counters;
  std::shared_ptr<kind_counters> order_counters;
  db_pool signups; ///< runtime_commerce.cpp
  db_pool logins;
  /// Passwords hashed for sign-ups (a duplicate email is refused before hashing).
  std::shared_ptr<std::atomic<std::int64_t>> signup_hashes =
    std::make_shared<std::atomic<std::int64_t>>(0);
  db_pool search;                   ///< runtime_search.cpp
  db_pool payments;                 ///< the payment provider's calls (runtime_commerce.cpp)
  std::vector<caf::actor> services; ///< stopped with the managers
  struct feed_parts;                ///< runtime_feeds.cpp
  std::shared_ptr<feed_parts> feed;
  /// Recently verified customer tokens (hash → customer, expiry), so that authenticated
  /// requests do not pay a Redis or PostgreSQL round trip each.
  struct session_cache;
  std::shared_ptr<session_cache> sessions;
  /// GET /readyz's database check, shared: a probe that arrives while one runs waits for its
  /// answer. Probes are not rate limited, so otherwise a flood of them would fill the pool's
  /// queue; this way it holds one of them at most. No answer is kept for later probes: a probe
  /// right after PostgreSQL went away must say so.
  struct readiness {
    std::mutex m;
    bool running = false;
    std::vector<callback<bool>> waiting;
  };
  std::shared_ptr<readiness> ready = std::make_shared<readiness>();
  directory dir;
  std::shared_ptr<cluster_counters> cluster = std::make_shared<cluster_counters>();
  std::atomic<bool> stopped{false};
  /// Set by stop_all_but_entities: the entity actors still run, and only the process's end
  /// may follow.
  bool entities_left = false;
};

} // namespace emporium::actors
