// The operator's handlers: the probes, GET /metrics (Prometheus text), GET /openapi.json.

#include "http/feed_protocol.hpp"
#include "http/handler_support.hpp"
#include "http/metrics.hpp"
#include "http/openapi.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"
#include "persistence/cache.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace emporium::http {

namespace {

/// The values other layers own, read at scrape time.
void write_runtime(metrics::writer& w, const actors::runtime_stats& s) {
  using metrics::kind;
  const std::vector<std::pair<std::string, actors::kind_stats>> kinds{
    {"product", s.products}, {"customer", s.customers}, {"cart", s.carts}, {"order", s.orders}};
  auto per_kind = [&](const char* name, const char* help, kind k, auto member) {
    w.header(name, help, k);
    for (const auto& [label, st] : kinds)
      w.sample(name, {{"kind", label}}, static_cast<double>(st.*member));
  };
  per_kind("emporium_actors_active", "Entity actors alive now, by kind", kind::gauge,
           &actors::kind_stats::active);
  per_kind("emporium_actor_activations_total", "Entity actors started (loaded), by kind",
           kind::counter, &actors::kind_stats::activations);
  per_kind("emporium_actor_passivations_total", "Entity actors stopped after idling, by kind",
           kind::counter, &actors::kind_stats::passivations);
  per_kind("emporium_actor_crashes_total", "Entity actors that failed, by kind", kind::counter,
           &actors::kind_stats::crashes);
  w.header("emporium_product_snapshots",
           "Product snapshots published by the active product actors of this node", kind::gauge);
  w.sample("emporium_product_snapshots", {}, static_cast<double>(s.product_snapshots));
  w.header("emporium_product_snapshot_reads_total",
           "Product reads answered from a snapshot, without an actor message", kind::counter);
  w.sample("emporium_product_snapshot_reads_total", {},
           static_cast<double>(s.product_snapshot_reads));

  w.header("emporium_db_pool_connections", "PostgreSQL worker connections in the pool",
           kind::gauge);
  w.sample("emporium_db_pool_connections", {}, s.db_size);
  w.header("emporium_db_pool_in_use", "PostgreSQL workers running a job now", kind::gauge);
  w.sample("emporium_db_pool_in_use", {}, s.db_in_use);
  w.header("emporium_db_pool_waiting", "Jobs queued for a PostgreSQL worker", kind::gauge);
  w.sample("emporium_db_pool_waiting", {}, s.db_waiting);
  w.header("emporium_db_jobs_total",
           "Jobs run by the PostgreSQL pool's workers (the placement committer's batches apart)",
           kind::counter);
  w.sample("emporium_db_jobs_total", {}, static_cast<double>(s.db_jobs));
  w.header("emporium_db_batches_total",
           "Runs of batchable database jobs (cart writes, payment intents and records): one "
           "statement for all the jobs of a run; emporium_db_batched_jobs_total over this is "
           "their mean size",
           kind::counter);
  w.sample("emporium_db_batches_total", {}, static_cast<double>(s.db_batches));
  w.header("emporium_db_batched_jobs_total", "The jobs of those runs", kind::counter);
  w.sample("emporium_db_batched_jobs_total", {}, static_cast<double>(s.db_batched_jobs));
  w.header("emporium_db_retries_total", "PostgreSQL transactions re-run after a transient failure",
           kind::counter);
  w.sample("emporium_db_retries_total", {}, static_cast<double>(s.db_retries));
  w.header("emporium_auth_db_retries_total",
           "Sign-up and login jobs re-run after a transient database failure", kind::counter);
  w.sample("emporium_auth_db_retries_total", {}, static_cast<double>(s.auth_db_retries));
  w.header("emporium_signup_hashes_total",
           "Passwords hashed for sign-ups (a known email is refused before hashing)",
           kind::counter);
  w.sample("emporium_signup_hashes_total", {}, static_cast<double>(s.signup_hashes));
  w.header("emporium_auth_waiting", "Sign-ups and logins queued for a password-hashing worker",
           kind::gauge);
  w.sample("emporium_auth_waiting", {}, s.auth_waiting);

  w.header("emporium_circuit_breaker_state",
           "Circuit breaker per dependency: 0 closed, 1 open, 2 half-open", kind::gauge);
  w.sample("emporium_circuit_breaker_state", {{"dependency", "postgres"}}, s.db_breaker);
  w.sample("emporium_circuit_breaker_state", {{"dependency", "redis"}}, s.cache_breaker);
  w.header("emporium_circuit_breaker_opened_total", "Times the breaker opened since start",
           kind::counter);
  w.sample("emporium_circuit_breaker_opened_total", {{"dependency", "postgres"}},
           static_cast<double>(s.db_breaker_opened));
  w.header("emporium_cache_pending_invalidations",
           "Keys whose Redis write failed, read from PostgreSQL until Redis deleted them",
           kind::gauge);
  w.sample("emporium_cache_pending_invalidations", {},
           static_cast<double>(s.cache_pending_invalidations));

  const auto& cl = s.cluster;
  w.header("emporium_cluster_members", "Configured cluster members by state, this node included",
           kind::gauge);
  w.sample("emporium_cluster_members", {{"state", "up"}}, cl.live);
  w.sample("emporium_cluster_members", {{"state", "down"}}, cl.configured - cl.live);
  w.header("emporium_cluster_ring_version", "Changes of the live members seen by this node",
           kind::gauge);
  w.sample("emporium_cluster_ring_version", {}, static_cast<double>(cl.ring_version));
  w.header("emporium_cluster_serving",
           "1 while this node sees a majority of the cluster and serves entities", kind::gauge);
  w.sample("emporium_cluster_serving", {}, cl.serving ? 1 : 0);
  const auto& f = s.forwarding;
  w.header("emporium_cluster_forwarded_total", "Entity requests forwarded to their owner node",
           kind::counter);
  w.sample("emporium_cluster_forwarded_total", {}, static_cast<double>(f.forwarded));
  w.header("emporium_cluster_failed_promises_total",
           "Forwarded writes answered 503 at once because their node died", kind::counter);
  w.sample("emporium_cluster_failed_promises_total", {}, static_cast<double>(f.failed));
  w.header("emporium_cluster_retried_reads_total",
           "Forwarded reads sent again to a new owner because their node died", kind::counter);
  w.sample("emporium_cluster_retried_reads_total", {}, static_cast<double>(f.retried));
  w.header("emporium_cluster_moved_total",
           "Requests from another node for an entity this node does not own", kind::counter);
  w.sample("emporium_cluster_moved_total", {}, static_cast<double>(f.moved));
  w.header("emporium_cluster_forward_seconds", "Time from forwarding a request to its answer",
           kind::histogram);
  for (const auto& [le, n] : f.latency_buckets)
    w.sample("emporium_cluster_forward_seconds_bucket",
             {{"le", std::isinf(le) ? std::string{"+Inf"} : fmt::format("{}", le)}},
             static_cast<double>(n));
  w.sample("emporium_cluster_forward_seconds_sum", {}, f.latency_sum_s);
  w.sample("emporium_cluster_forward_seconds_count", {}, static_cast<double>(f.latency_count));

  auto& c = persistence::cache_stats();
  w.header("emporium_cache_hits_total", "Redis cache lookups that found the entity", kind::counter);
  w.sample("emporium_cache_hits_total", {}, static_cast<double>(c.hits.load()));
  w.header("emporium_cache_misses_total", "Redis cache lookups that did not", kind::counter);
  w.sample("emporium_cache_misses_total", {}, static_cast<double>(c.misses.load()));
  w.header("emporium_cache_errors_total", "Redis cache calls that failed (Redis unreachable)",
           kind::counter);
  w.sample("emporium_cache_errors_total", {}, static_cast<double>(c.errors.load()));
}

void write_feeds(metrics::writer& w, const actors::feed_stats& f, const feeds::registry& open) {
  using metrics::kind;
  w.header("emporium_feed_subscriptions", "Feed subscriptions open now, all topics", kind::gauge);
  w.sample("emporium_feed_subscriptions", {}, static_cast<double>(f.subscriptions));
  w.header("emporium_feed_topics", "Topics with at least one subscription", kind::gauge);
  w.sample("emporium_feed_topics", {}, static_cast<double>(f.topics));
  w.header("emporium_feed_events_delivered_total", "Events handed to subscribers", kind::counter);
  w.sample("emporium_feed_events_delivered_total", {}, static_cast<double>(f.delivered));
  w.header("emporium_feed_dropped_total",
           "Subscriptions dropped because their connection's send queue was full", kind::counter);
  w.sample("emporium_feed_dropped_total", {}, static_cast<double>(f.dropped));
  w.header("emporium_feed_replayed_total",
           "Events read back from the outbox (resumes, gaps, a lost LISTEN connection)",
           kind::counter);
  w.sample("emporium_feed_replayed_total", {}, static_cast<double>(f.replayed));
  w.header("emporium_feed_listening", "1 while the PostgreSQL LISTEN connection is up",
           kind::gauge);
  w.sample("emporium_feed_listening", {}, f.listening ? 1 : 0);
  w.header("emporium_feed_connections", "Feed connections open now, by transport", kind::gauge);
  w.sample("emporium_feed_connections", {{"transport", "ws"}},
           static_cast<double>(open.open(feeds::transport::ws)));
  w.sample("emporium_feed_connections", {{"transport", "sse"}},
           static_cast<double>(open.open(feeds::transport::sse)));
}

void get_metrics(app& a, const request&, const path_params&, const query_args&, responder respond) {
  metrics::writer w;
  auto stats = a.runtime.stats();
  write_runtime(w, stats);
  write_feeds(w, stats.feeds, *a.feed_connections);
  response res;
  res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  res.body = metrics::global().render() + w.take();
  respond(std::move(res));
}

void get_openapi(app&, const request&, const path_params&, const query_args&, responder respond) {
  response res;
  res.body = openapi::document();
  respond(std::move(res));
}

void get_cluster(app& a, const request&, const path_params&, const query_args&, responder respond) {
  auto c = a.runtime.cluster();
  nlohmann::json members = nlohmann::json::array();
  for (const auto& m : c.members)
    members.push_back({{"node", m.node}, {"state", m.state}});
  nlohmann::json j{{"node", c.node},       {"ring_version", c.ring_version},
                   {"serving", c.serving}, {"configured", c.configured},
                   {"live", c.live},       {"members", std::move(members)}};
  respond(json_response(200, j.dump()));
}

void get_cluster_owner(app& a, const request&, const path_params& params, const query_args&,
                       responder respond) {
  const auto& id = params["id"];
  auto c = a.runtime.cluster();
  nlohmann::json j{{"id", id}, {"owner", a.runtime.owner_of(id)}, {"ring_version", c.ring_version}};
  respond(json_response(200, j.dump()));
}

void get_healthz(app&, const request&, const path_params&, const query_args&, responder respond) {
  respond(json_response(200, R"({"status":"ok"})"));
}

void get_readyz(app& a, const request&, const path_params&, const query_args&, responder respond) {
  a.runtime.check_ready(on_strand<bool>(respond, [](const result<bool>& ok) {
    if (!ok)
      return problem(503, ok.error().detail == "not serving"
                            ? "this node cannot see a majority of the cluster"
                            : "PostgreSQL is not reachable");
    return json_response(200, R"({"status":"ready"})");
  }));
}

} // namespace

const std::vector<binding>& ops_handlers() {
  static const std::vector<binding> list{{"healthz", get_healthz},
                                         {"readyz", get_readyz},
                                         {"metrics", get_metrics},
                                         {"getCluster", get_cluster},
                                         {"getClusterOwner", get_cluster_owner},
                                         {"openapi", get_openapi}};
  return list;
}

} // namespace emporium::http
