#include "config/net_address.hpp"
#include "config/settings.hpp"
#include "config/text.hpp"
#include "config/url.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string_view>

namespace emporium::config {
namespace {

using detail::format_number;
using detail::parse_host_port;
using detail::shown;
using detail::trim;
using detail::valid_scheme;

template <class T>
void require_between(const char* key, T value, T lo, T hi, const char* unit = "") {
  if (value < lo || value > hi)
    throw config_error("config: " + std::string(key) + " must be between " + std::to_string(lo)
                       + " and " + std::to_string(hi) + unit + ", got " + std::to_string(value));
}

void require_positive(const char* key, long long value) {
  if (value <= 0)
    throw config_error("config: " + std::string(key) + " must be greater than 0, got "
                       + std::to_string(value));
}

/// The HTTP gateway's keys: drain, CORS and the rate limiter's classes and modes.
void validate_gateway(const settings& s) {
  require_positive("http.drain_timeout_ms", s.http.drain_timeout_ms);
  for (std::size_t i = 0; i < s.http.cors_origins.size(); ++i) {
    // An origin is scheme://host[:port], nothing after it: browsers send exactly that.
    const std::string& o = s.http.cors_origins[i];
    const auto sep = o.find("://");
    const bool ok = o == "*"
                    || (sep != std::string::npos && valid_scheme(o.substr(0, sep))
                        && o.find('/', sep + 3) == std::string::npos && sep + 3 < o.size()
                        && o.back() != ':');
    if (!ok)
      throw config_error("config: http.cors_origins[" + std::to_string(i) + "]: " + shown(o)
                         + " is not an origin (scheme://host[:port]) or \"*\"");
  }
  for (std::size_t i = 0; i < s.http.trusted_proxies.size(); ++i)
    if (!parse_cidr(trim(s.http.trusted_proxies[i])))
      throw config_error("config: http.trusted_proxies[" + std::to_string(i)
                         + "]: " + shown(s.http.trusted_proxies[i])
                         + " is not an address or a CIDR block (192.0.2.0/24, 2001:db8::/32)");
  const auto& r = s.rate_limit;
  if (r.mode != "auto" && r.mode != "local" && r.mode != "redis")
    throw config_error("config: rate_limit.mode must be auto, local or redis, got "
                       + shown(r.mode));
  const auto capacity = [](const char* key, int v) {
    if (v < 1)
      throw config_error("config: " + std::string(key) + " must be at least 1, got "
                         + std::to_string(v));
  };
  const auto refill = [](const char* key, double v) {
    if (!(v > 0) || !std::isfinite(v))
      throw config_error("config: " + std::string(key) + " must be a number greater than 0, got "
                         + format_number(v));
  };
  if (r.read_capacity)
    capacity("rate_limit.read_capacity", *r.read_capacity);
  if (r.read_refill_per_s)
    refill("rate_limit.read_refill_per_s", *r.read_refill_per_s);
  if (r.write_capacity)
    capacity("rate_limit.write_capacity", *r.write_capacity);
  if (r.write_refill_per_s)
    refill("rate_limit.write_refill_per_s", *r.write_refill_per_s);
  capacity("rate_limit.login_capacity", r.login_capacity);
  refill("rate_limit.login_refill_per_s", r.login_refill_per_s);
  capacity("rate_limit.signup_capacity", r.signup_capacity);
  refill("rate_limit.signup_refill_per_s", r.signup_refill_per_s);
  require_between("rate_limit.redis_timeout_ms", r.redis_timeout_ms, 1, 10'000);
  require_between("rate_limit.max_buckets", r.max_buckets, 16, 100'000'000);
}

} // namespace

void validate(const settings& s) {
  if (s.http.host.empty())
    throw config_error("config: http.host must not be empty");
  require_between("http.port", s.http.port, std::uint16_t{1}, std::uint16_t{65535});
  require_between("http.threads", s.http.threads, 1, 64);
  require_between<std::size_t>("http.body_limit", s.http.body_limit, 1, std::size_t{1} << 30,
                               " bytes (1 GiB)");
  require_between<std::size_t>("http.header_limit", s.http.header_limit, 1024, std::size_t{1} << 20,
                               " bytes (1 KiB..1 MiB)");
  require_positive("http.header_timeout_ms", s.http.header_timeout_ms);
  require_positive("http.idle_timeout_ms", s.http.idle_timeout_ms);
  require_positive("http.request_timeout_ms", s.http.request_timeout_ms);
  require_between("http.max_pipeline", s.http.max_pipeline, 1, 1024);
  if (s.http.max_connections)
    require_positive("http.max_connections", *s.http.max_connections);
  require_positive("http.max_connections_per_address", s.http.max_connections_per_address);
  require_positive("http.body_timeout_ms", s.http.body_timeout_ms);

  parse_url("postgres.url", s.postgres.url, {"postgresql", "postgres"});
  require_between("postgres.pool_size", s.postgres.pool_size, 1, 256);
  require_positive("postgres.connect_timeout_ms", s.postgres.connect_timeout_ms);
  require_positive("postgres.statement_timeout_ms", s.postgres.statement_timeout_ms);
  require_between("postgres.breaker_threshold", s.postgres.breaker_threshold, 1, 1000);
  require_positive("postgres.breaker_open_ms", s.postgres.breaker_open_ms);

  const auto redis = parse_url("redis.url", s.redis.url, {"redis"});
  if (!redis.path.empty() && !std::all_of(redis.path.begin(), redis.path.end(), [](char c) {
        return c >= '0' && c <= '9';
      }))
    throw config_error("config: redis.url: the path must be a database number, got "
                       + shown(redis.path));
  require_positive("redis.timeout_ms", s.redis.timeout_ms);
  require_positive("redis.ttl_s", s.redis.ttl_s);
  require_between("redis.breaker_threshold", s.redis.breaker_threshold, 1, 1000);
  require_positive("redis.breaker_open_ms", s.redis.breaker_open_ms);

  // The key itself is never echoed, only its length.
  if (s.auth.admin_key && s.auth.admin_key->size() < 16)
    throw config_error("config: auth.admin_key must be at least 16 characters, got "
                       + std::to_string(s.auth.admin_key->size()));

  if (s.cluster.node_port)
    require_between("cluster.node_port", *s.cluster.node_port, std::uint16_t{1},
                    std::uint16_t{65535});
  for (std::size_t i = 0; i < s.cluster.peers.size(); ++i)
    if (!parse_host_port(s.cluster.peers[i]))
      throw config_error("config: cluster.peers[" + std::to_string(i)
                         + "]: " + shown(s.cluster.peers[i]) + " is not host:port (port 1..65535)");
  // Peers connect to this node on its node port; without one it could not be reached back.
  if (!s.cluster.peers.empty() && !s.cluster.node_port)
    throw config_error("config: cluster.peers is set but cluster.node_port is not");
  if (s.cluster.node_host.empty())
    throw config_error("config: cluster.node_host must not be empty");
  {
    const int tls_set = !s.cluster.tls_certificate.empty() + !s.cluster.tls_key.empty()
                        + !s.cluster.tls_cafile.empty();
    if (tls_set != 0 && tls_set != 3)
      throw config_error(
        "config: cluster.tls_certificate, cluster.tls_key and cluster.tls_cafile "
        "go together: set all three or none");
  }
  // A plaintext node port binds loopback only: its protocol lets anyone who reaches it message
  // any actor. A node named by another address would be unreachable by its peers.
  if (s.cluster.node_port && s.cluster.tls_certificate.empty() && !s.cluster.insecure_bind) {
    const auto& h = s.cluster.node_host;
    if (h != "localhost" && h != "::1" && h.rfind("127.", 0) != 0)
      throw config_error("config: cluster.node_host " + shown(h)
                         + " is not a loopback address: peers elsewhere need TLS "
                           "(cluster.tls_certificate, tls_key, tls_cafile) or, on a private "
                           "network you trust, cluster.insecure_bind = true");
  }
  require_between("cluster.heartbeat_ms", s.cluster.heartbeat_ms, 50, 60'000);
  if (s.cluster.peer_timeout_ms < 2 * s.cluster.heartbeat_ms)
    throw config_error(
      "config: cluster.peer_timeout_ms must be at least twice cluster.heartbeat_ms, "
      "got "
      + std::to_string(s.cluster.peer_timeout_ms));
  // Each node would give every client a full bucket of its own: N nodes, N times the quota.
  if (!s.cluster.peers.empty() && s.rate_limit.mode == "local")
    throw config_error(
      "config: rate_limit.mode must be redis when cluster.peers is set (a local "
      "bucket per node would give every client the quota once per node)");

  if (s.rate_limit.capacity < 1)
    throw config_error("config: rate_limit.capacity must be at least 1, got "
                       + std::to_string(s.rate_limit.capacity));
  if (!(s.rate_limit.refill_per_s > 0) || !std::isfinite(s.rate_limit.refill_per_s))
    throw config_error("config: rate_limit.refill_per_s must be a number greater than 0, got "
                       + format_number(s.rate_limit.refill_per_s));
  validate_gateway(s);

  require_positive("auth.session_ttl_s", s.auth.session_ttl_s);
  require_between("auth.session_cache_ms", s.auth.session_cache_ms, 0, 60'000);
  require_between("auth.signup_workers", s.auth.signup_workers, 1, 64);
  require_between("auth.login_workers", s.auth.login_workers, 1, 64);
  require_between("auth.signup_queue_limit", s.auth.signup_queue_limit, 1, 100'000);
  require_between("auth.login_queue_limit", s.auth.login_queue_limit, 1, 100'000);
  require_positive("orders.payment_timeout_s", s.orders.payment_timeout_s);
  require_between("orders.max_lines", s.orders.max_lines, 1, 1000);
  require_between("orders.max_open_unpaid_per_customer", s.orders.max_open_unpaid_per_customer, 1,
                  10'000);
  require_between("orders.max_units_per_line", s.orders.max_units_per_line, 1, 1'000'000);
  require_between("orders.payment_workers", s.orders.payment_workers, 1, 64);
  require_positive("carts.ttl_s", s.carts.ttl_s);
  require_between("retention.interval_s", s.retention.interval_s, 1, 7 * 24 * 3600);
  require_between("retention.batch_size", s.retention.batch_size, 1, 100'000);
  require_between("retention.expired_grace_h", s.retention.expired_grace_h, 0, 24 * 365);
  // A client may retry a request under its Idempotency-Key for up to a day: a key
  // deleted sooner would let a retry place a second order.
  require_between("retention.idempotency_keys_h", s.retention.idempotency_keys_h, 24, 24 * 365);
  require_between("retention.events_h", s.retention.events_h, 1, 24 * 365 * 10);
  require_between("feeds.max_subscriptions_per_connection",
                  s.feeds.max_subscriptions_per_connection, 1, 10'000);
  require_between("feeds.max_connections_per_address", s.feeds.max_connections_per_address, 1,
                  100'000);
  require_between("feeds.send_queue_max", s.feeds.send_queue_max, 8, 1'000'000);
  require_between("feeds.ping_s", s.feeds.ping_s, 1, 3'600);
  if (s.loyalty.silver_points < 1 || s.loyalty.gold_points <= s.loyalty.silver_points)
    throw config_error(
      "config: loyalty.gold_points must exceed loyalty.silver_points, both positive");
  for (const auto& [currency, cents] : s.shipping.free_above_cents)
    if (currency.size() != 3 || cents < 0)
      throw config_error("config: shipping.free_above_cents: " + shown(currency)
                         + " must be a 3-letter currency with a non-negative amount");
  if (s.shipping.default_country.size() != 2)
    throw config_error("config: shipping.default_country must be an ISO 3166-1 alpha-2 code");
  for (std::size_t i = 0; i < s.shipping.zones.size(); ++i) {
    const auto& z = s.shipping.zones[i];
    const std::string at = "config: shipping.zones[" + std::to_string(i) + "]";
    if (z.name.empty() || z.countries.empty() || z.rates.empty())
      throw config_error(at + " needs a name, countries and rates");
    for (const auto& c : z.countries)
      if (c.size() != 2)
        throw config_error(at + ": country " + shown(c) + " is not alpha-2");
    for (std::size_t r = 0; r < z.rates.size(); ++r)
      if (z.rates[r].max_grams <= 0 || (r > 0 && z.rates[r].max_grams <= z.rates[r - 1].max_grams))
        throw config_error(at + ": rates must have ascending positive max_grams");
  }

  require_between("actors.scheduler_threads", s.actors.scheduler_threads, 1, 64);
  require_between("actors.scheduler_idle_polls", s.actors.scheduler_idle_polls, 0, 100'000);
  require_positive("actors.idle_timeout_s", s.actors.idle_timeout_s);

  require_between("log.access_queue_lines", s.log.access_queue_lines, 1, 10'000'000);

  static constexpr std::string_view levels[] = {"trace", "debug",    "info", "warn",
                                                "error", "critical", "off"};
  if (std::find(std::begin(levels), std::end(levels), s.log.level) == std::end(levels))
    throw config_error(
      "config: log.level must be one of trace, debug, info, warn, error, "
      "critical, off, got "
      + shown(s.log.level));
}

} // namespace emporium::config
