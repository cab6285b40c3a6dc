#include "actors/runtime_impl.hpp"

#include <limits>

namespace emporium::actors {

runtime::runtime(const config::settings& s) : impl_(std::make_unique<impl>(s)) {}

runtime::~runtime() {
  if (impl_->entities_left) {
    // stop_for_exit left the entity actors running: the actor system's destructor would wait
    // for them. The process is ending; its memory goes with it.
    static_cast<void>(impl_.release());
    return;
  }
  shutdown();
}

void runtime::check_ready(callback<bool> cb) {
  // A node cut off from the cluster's majority serves no entity: a balancer should skip it.
  if (!impl_->dir.serving()) {
    run_callback(cb, result<bool>{failure{errc::unavailable, "not serving", {}}});
    return;
  }
  // Stopping drops the calls in flight unanswered: a check then would never end.
  if (impl_->stopped.load()) {
    run_callback(cb, result<bool>{failure{errc::unavailable, "the server is stopping", {}}});
    return;
  }
  auto ready = impl_->ready;
  {
    std::lock_guard<std::mutex> lock{ready->m};
    ready->waiting.push_back(std::move(cb));
    if (ready->running)
      return; // answered with the check in flight
    ready->running = true;
  }
  impl_->run_db<bool>(
    [](persistence::backend& b) {
      pqxx::nontransaction tx{b.pg.connection()};
      tx.exec("SELECT 1");
      return result<bool>{true};
    },
    [ready](result<bool> r) {
      std::vector<callback<bool>> waiting;
      {
        std::lock_guard<std::mutex> lock{ready->m};
        ready->running = false;
        waiting.swap(ready->waiting);
      }
      for (const auto& w : waiting)
        run_callback(w, r);
    },
    std::chrono::seconds(2));
}

runtime_stats runtime::stats() const {
  runtime_stats s;
  auto snapshot = [](const kind_counters& c) {
    return kind_stats{c.active.load(), c.activations.load(), c.passivations.load(),
                      c.crashes.load()};
  };
  s.products = snapshot(*impl_->product_counters);
  s.product_snapshots = impl_->snapshots.size();
  s.product_snapshot_reads = impl_->snapshot_reads.load(std::memory_order_relaxed);
  s.customers = snapshot(*impl_->customer_counters);
  s.carts = snapshot(*impl_->cart_counters);
  s.orders = snapshot(*impl_->order_counters);
  s.db_in_use = impl_->pool.counters().in_use.load();
  s.db_waiting = impl_->pool.counters().waiting.load();
  s.db_size = static_cast<int>(impl_->pool.size());
  s.db_jobs = impl_->pool.counters().jobs.load();
  s.db_batches = impl_->pool.counters().batches.load();
  s.db_batched_jobs = impl_->pool.counters().batched_jobs.load();
  s.db_retries = impl_->pool.counters().retries.load();
  s.auth_db_retries = impl_->signups.counters().retries.load()
                      + impl_->logins.counters().retries.load();
  s.signup_hashes = impl_->signup_hashes->load();
  s.auth_waiting = impl_->signups.counters().waiting.load()
                   + impl_->logins.counters().waiting.load();
  s.db_breaker = static_cast<int>(impl_->pool.counters().breaker.current());
  s.db_breaker_opened = impl_->pool.counters().breaker.times_opened();
  s.cache_breaker = persistence::redis_cache::breaker_state();
  s.cache_pending_invalidations = persistence::redis_cache::pending_invalidations();
  s.cluster = cluster();
  const auto& c = *impl_->cluster;
  auto& f = s.forwarding;
  f.forwarded = c.forwarded.load();
  f.failed = c.failed.load();
  f.retried = c.retried.load();
  f.moved = c.moved->load();
  std::int64_t cumulative = 0;
  for (std::size_t i = 0; i < c.buckets.size(); ++i) {
    cumulative += c.buckets[i].load();
    const double le = i < cluster_counters::bucket_us.size()
                        ? static_cast<double>(cluster_counters::bucket_us[i]) / 1e6
                        : std::numeric_limits<double>::infinity();
    f.latency_buckets.emplace_back(le, cumulative);
  }
  f.latency_sum_s = static_cast<double>(c.latency_sum_us.load()) / 1e6;
  f.latency_count = c.latency_count.load();
  s.feeds = impl_->feed_snapshot();
  return s;
}

const std::string& runtime::node() const {
  return impl_->dir.self();
}

cluster_status runtime::cluster() const {
  if (!impl_->dir.clustered()) {
    cluster_status s;
    s.node = impl_->dir.self();
    s.ring_version = 1;
    s.members.push_back({s.node, "self"});
    return s;
  }
  auto s = impl_->cluster->status();
  s.serving = impl_->dir.serving(); // the lease may have run out since the last change
  return s;
}

std::string runtime::owner_of(const std::string& id) const {
  return impl_->dir.owner_of(id);
}

void runtime::shutdown() {
  impl_->shutdown();
}

bool runtime::stop_for_exit(std::int64_t teardown_limit) {
  const auto active = impl_->product_counters->active.load()
                      + impl_->customer_counters->active.load()
                      + impl_->cart_counters->active.load() + impl_->order_counters->active.load();
  const bool cluster = impl_->settings.cluster.node_port.has_value();
  if (active <= teardown_limit) {
    impl_->shutdown();
    // A cluster node ends the process with every actor of ours stopped but without tearing the
    // actor system down: CAF 0.17.6's middleman, stopped while a peer's BASP handshake is still
    // in flight (peers dial a node until it is gone), loses its broker with the connection's
    // state and the peer's spawn-server helper (LeakSanitizer reported it on most cluster node
    // exits of the sanitizer run). Nothing of ours is left to stop.
    return !cluster;
  }
  impl_->stop_all_but_entities();
  spdlog::info("workers and services stopped; {} entity actors left to the end of the process",
               active);
  return false;
}

} // namespace emporium::actors
