#pragma once
/// Typed configuration. Precedence, lowest to highest: built-in defaults, the TOML file given by
/// `--config FILE`, `EMPORIUM_*` environment variables, command-line flags.

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace emporium::config {

/// Thrown for any invalid setting; `what()` is one line that names the offending key.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct http_settings {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  int threads = 1;                      ///< Asio threads; 1 measured best on 2 cores
  std::size_t body_limit = 1024 * 1024; ///< bytes; beyond it 413
  std::size_t header_limit = 16 * 1024; ///< bytes; beyond it 431
  int header_timeout_ms = 10'000;       ///< a request's header block must arrive within it
  int body_timeout_ms = 30'000;         ///< its body within this long after the header
  int idle_timeout_ms = 30'000;         ///< keep-alive connections idle this long are closed
  int request_timeout_ms = 5'000;       ///< deadline of one request inside the server
  int max_pipeline = 16;                ///< requests read ahead on one connection
  /// Unset: derived at start from the open-files limit (http/server.hpp, derived_max_connections).
  std::optional<int> max_connections;
  int max_connections_per_address = 256; ///< from one client address (IPv6: one /64)
  /// Proxies (CIDR blocks or addresses) whose X-Forwarded-For is believed; none by default.
  std::vector<std::string> trusted_proxies;
  int drain_timeout_ms = 10'000;         ///< on SIGTERM, in-flight requests get this long to finish
  std::vector<std::string> cors_origins; ///< origins allowed by CORS ("*": any); none by default
};

struct postgres_settings {
  std::string url = "postgresql://emporium@127.0.0.1:5432/emporium";
  int pool_size = 4; ///< connections, each owned by one blocking worker (and the lanes)
  int connect_timeout_ms = 2'000;
  int statement_timeout_ms = 5'000;
  int breaker_threshold = 5;   ///< consecutive failures that open the circuit
  int breaker_open_ms = 2'000; ///< how long it stays open before one probe
};

struct redis_settings {
  std::string url = "redis://127.0.0.1:6379/0";
  int timeout_ms = 200; ///< connect and command timeout
  int ttl_s = 3'600;    ///< a cap on the life of cached search results and session copies
  int breaker_threshold = 3;
  int breaker_open_ms = 1'000;
};

struct auth_settings {
  std::optional<std::string> admin_key; ///< none: generated at first start and printed once
  /// SHA-256 hex of the admin key in use: not read from any source, set at start from the
  /// database (persistence::ensure_admin_key). The HTTP gateway checks the admin key against it
  /// and derives the session-token and search-cursor keys from it.
  std::string admin_key_hash;
  int session_ttl_s = 30 * 24 * 3600; ///< customer bearer tokens expire after this long
  /// How long a node believes a session it verified without asking again (its in-process
  /// session cache): a session deleted in PostgreSQL through another node is refused here at
  /// most this long after (plus the life of its Redis copy). 0: no in-process cache.
  int session_cache_ms = 2'000;
  /// Password hashing (Argon2id, 64 MiB each) runs on workers of its own, sign-ups apart from
  /// logins, so that a flood of sign-ups cannot delay a login behind it.
  int signup_workers = 1;
  int login_workers = 2;
  /// Hashing jobs allowed to wait per pool; beyond, the request answers 503 with Retry-After at
  /// once instead of queueing without bound.
  int signup_queue_limit = 8;
  int login_queue_limit = 32;
};

struct cluster_settings {
  /// This node's name is node_host:node_port: peers dial it there, and it is what
  /// X-Emporium-Node, /cluster and the ownership ring call this node.
  std::string node_host = "127.0.0.1";
  std::optional<std::uint16_t> node_port; ///< none: single node (the io middleman is not loaded)
  std::vector<std::string> peers;         ///< host:port of the other nodes (own address ignored)
  /// Node links over TLS (CAF's OpenSSL module): this node's certificate and key, and the CA
  /// that signed every member's certificate. All three or none.
  std::string tls_certificate;
  std::string tls_key;
  std::string tls_cafile;
  /// Without TLS the node port binds to loopback only, unless this says otherwise (a private
  /// network you trust: anyone reaching a plaintext node port can message any actor).
  bool insecure_bind = false;
  /// Every node sends a heartbeat this often, and a peer silent for peer_timeout_ms is down
  /// (the middleman's heartbeat-interval and connection-timeout, and the quorum lease).
  int heartbeat_ms = 500;
  int peer_timeout_ms = 2000;
};

struct rate_limit_settings {
  int capacity = 200;
  double refill_per_s = 100;
  /// local: one bucket per client on each node; redis: one bucket per client shared by every
  /// node (a Lua script in Redis), falling back to local limiting while Redis is unreachable;
  /// auto: redis when cluster.peers is set, else local (load() resolves it). local with peers
  /// is refused.
  std::string mode = "auto";
  std::optional<int> read_capacity;         ///< GET, HEAD, OPTIONS; unset: capacity
  std::optional<double> read_refill_per_s;  ///< unset: refill_per_s
  std::optional<int> write_capacity;        ///< every other method; unset: capacity
  std::optional<double> write_refill_per_s; ///< unset: refill_per_s
  int login_capacity = 10;                  ///< POST /sessions, against password guessing
  double login_refill_per_s = 0.2;          ///< 12 a minute
  int signup_capacity = 5;                  ///< POST /customers, per address, against floods
  double signup_refill_per_s = 0.02;        ///< one every 50 s, 72 an hour
  int redis_timeout_ms = 50;                ///< a later Redis answer is replaced by a local one
  int max_buckets = 100'000;                ///< local buckets kept; the least recently used go
};

struct actor_settings {
  int scheduler_threads = 1; ///< CAF workers; 1 measured best on 2 cores
  /// Polls, 50 µs apart, an idle CAF worker makes before it waits for its next message (CAF
  /// 0.17's default 500, 25 ms of wake-ups). 0: it waits at once, and a message wakes it.
  /// 0 measured best on 2 cores shared with PostgreSQL (bench/README.md, session 16).
  int scheduler_idle_polls = 0;
  int idle_timeout_s = 60; ///< entity actors unused this long are passivated
};

struct orders_settings {
  int payment_timeout_s = 900; ///< unpaid orders are cancelled after this long
  int max_lines = 50;          ///< lines in one order, and distinct products in one cart
  /// Unpaid orders one customer may have open at once: each holds stock until paid or timed out.
  int max_open_unpaid_per_customer = 5;
  int max_units_per_line = 100; ///< units of one product in one order or cart
  /// Threads that call the payment provider (blocking, like the database), each with its own
  /// connection: payments in flight at once, each waiting up to the provider's answer.
  int payment_workers = 2;
};

struct carts_settings {
  int ttl_s = 7 * 24 * 3600; ///< a cart untouched this long expires
};

/// What is deleted once it can no longer be needed (run by one node at a time).
struct retention_settings {
  int interval_s = 300;        ///< between runs; a run that found a full batch goes on at once
  int batch_size = 1'000;      ///< rows of each kind deleted per transaction
  int expired_grace_h = 24;    ///< sessions and unused carts are kept this long past expiry
  int idempotency_keys_h = 48; ///< at least 24: clients retry within a day
  int events_h = 168;          ///< the outbox: feeds resume from up to this far back
};

/// The real-time feeds on the HTTP port: WebSocket /ws and Server-Sent Events.
struct feeds_settings {
  int max_subscriptions_per_connection = 100; ///< topics one WebSocket may follow (then 429)
  /// WebSocket and event-stream connections open at once from one client address (IPv6: one
  /// /64; trusted proxies: the client they report), beyond which the request answers 429.
  int max_connections_per_address = 32;
  /// Messages waiting to be written on one feed connection; a reader so slow that it fills
  /// them is disconnected (WebSocket close 1013, an event stream ends).
  int send_queue_max = 1024;
  int ping_s = 15; ///< WebSocket pings and event-stream keep-alive comments, this often
};

struct loyalty_settings {
  std::int64_t silver_points = 1'000;
  std::int64_t gold_points = 5'000;
};

/// One weight bracket of a zone: up to `max_grams`, a price per currency (minor units).
struct shipping_rate {
  std::int64_t max_grams = 0;
  std::map<std::string, std::int64_t> cents;
};

struct shipping_zone {
  std::string name;
  std::vector<std::string> countries; ///< ISO 3166-1 alpha-2
  std::vector<shipping_rate> rates;   ///< ascending max_grams
};

struct shipping_settings {
  /// Subtotal (minor units, per currency) from which shipping is free.
  std::map<std::string, std::int64_t> free_above_cents{{"USD", 10'000}, {"EUR", 9'000}};
  std::string default_country = "US"; ///< quoted in carts until an address is given
  std::vector<shipping_zone> zones = default_zones();

  static std::vector<shipping_zone> default_zones() {
    return {
      {"domestic",
       {"US"},
       {{1'000, {{"USD", 499}, {"EUR", 459}}},
        {5'000, {{"USD", 999}, {"EUR", 899}}},
        {30'000, {{"USD", 1'999}, {"EUR", 1'799}}}}},
      {"europe",
       {"AT", "BE", "CH", "DE", "DK", "ES", "FI", "FR", "GB", "IE", "IT", "NL", "NO", "PL", "PT",
        "SE"},
       {{1'000, {{"USD", 899}, {"EUR", 799}}},
        {5'000, {{"USD", 1'499}, {"EUR", 1'299}}},
        {30'000, {{"USD", 2'999}, {"EUR", 2'599}}}}},
      {"international",
       {"AU", "BR", "CA", "IN", "JP", "KR", "MX", "NZ", "SG", "ZA"},
       {{1'000, {{"USD", 1'499}, {"EUR", 1'399}}},
        {5'000, {{"USD", 2'999}, {"EUR", 2'799}}},
        {30'000, {{"USD", 5'999}, {"EUR", 5'499}}}}},
    };
  }
};

struct log_settings {
  std::string level = "info"; ///< trace, debug, info, warn, error, critical, off
  /// Access log lines that may wait to be written; one more is dropped (and counted).
  int access_queue_lines = 16'384;
};

struct settings {
  http_settings http;
  postgres_settings postgres;
  redis_settings redis;
  auth_settings auth;
  cluster_settings cluster;
  rate_limit_settings rate_limit;
  actor_settings actors;
  orders_settings orders;
  carts_settings carts;
  retention_settings retention;
  feeds_settings feeds;
  loyalty_settings loyalty;
  shipping_settings shipping;
  log_settings log;
};

/// A parsed `postgresql://user:password@host:port/db?...` or `redis://[:password@]host:port/db`.
struct url_parts {
  std::string scheme;
  std::string user;
  std::string password;
  std::string host;
  std::uint16_t port = 0;
  std::string path;  ///< without the leading '/'
  std::string query; ///< without the leading '?'
};

/// Parses a URL of the given scheme(s); throws config_error naming `key` when malformed.
url_parts parse_url(const std::string& key, const std::string& url,
                    const std::vector<std::string>& schemes);

/// Applies the TOML file at `path` onto `s`. Unknown keys and wrong types are errors.
void apply_toml_file(settings& s, const std::string& path);

/// Applies the TOML text onto `s` (what apply_toml_file does after reading the file).
void apply_toml_text(settings& s, const std::string& text, const std::string& origin);

/// Applies every `EMPORIUM_*` variable found in `env` (name → value).
void apply_environment(settings& s, const std::map<std::string, std::string>& env);

/// Reads the process environment into a map of the `EMPORIUM_*` variables.
std::map<std::string, std::string> process_environment();

/// Applies one `section.key=value` override, as given by `--set` on the command line.
void apply_override(settings& s, const std::string& dotted_key, const std::string& value);

/// This node's name: cluster.node_host:cluster.node_port in a cluster, http.host:http.port on a
/// single node (X-Emporium-Node, GET /cluster, the ownership ring).
std::string node_name(const settings& s);

/// Checks cross-field rules and ranges; throws config_error naming the key.
void validate(const settings& s);

/// Applies one `section.key=value` assignment, the text given to `--set`; splits at the first '='.
void apply_assignment(settings& s, const std::string& assignment);

/// The whole chain in precedence order: defaults, the TOML file (if any), the `EMPORIUM_*`
/// variables of `env`, each `section.key=value` of `assignments` in order, then validate().
settings load(const std::optional<std::string>& toml_path,
              const std::map<std::string, std::string>& env,
              const std::vector<std::string>& assignments);

/// `url` with its password and any `password=` parameter replaced by `***`: safe to log.
std::string redact_url(const std::string& url);

/// One configuration key: its TOML name (`section.key`) and its environment variable.
struct key_info {
  std::string key;
  std::string env;
};

/// Every known key, in declaration order (for `--help` and tests).
std::vector<key_info> known_keys();

} // namespace emporium::config
