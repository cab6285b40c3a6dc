#pragma once
/// The Redis cache client (hiredis). Blocking, like pg_session: one instance per worker thread.
/// Redis is only ever a cache here: every failure degrades to "miss" and the caller reads
/// PostgreSQL, so an outage makes reads slower, never wrong or failed.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

struct redisContext;

namespace emporium::persistence {

struct shared_state;

/// Where a Redis server is and how to log in, from a `redis://[:password@]host:port/db` URL.
struct redis_endpoint {
  std::string host;
  int port = 6379;
  std::string password;
  int db = 0;
};

/// The endpoint of `url`; throws config::config_error naming redis.url when it is malformed.
redis_endpoint parse_redis_url(const std::string& url);

/// Opens a connection: connects within `timeout`, which then bounds every command too, sends AUTH
/// when there is a password and SELECT for a database other than 0. The one way this program
/// (the cache, the rate limiter, the tests) connects to Redis. The context, to be released with
/// redisFree, or nullptr with `error` saying what failed. Blocks: worker threads only.
redisContext* connect_redis(const redis_endpoint& endpoint, std::chrono::milliseconds timeout,
                            std::string& error);

struct redis_options {
  std::string url;
  int timeout_ms = 200;
  int breaker_threshold = 3;
  int breaker_open_ms = 1'000;
};

/// Process-wide counters, read by /metrics.
struct cache_counters {
  std::atomic<std::uint64_t> hits{0};
  std::atomic<std::uint64_t> misses{0};
  std::atomic<std::uint64_t> errors{0};
};
cache_counters& cache_stats();

class redis_cache {
 public:
  explicit redis_cache(redis_options opts);
  ~redis_cache();
  redis_cache(const redis_cache&) = delete;
  redis_cache& operator=(const redis_cache&) = delete;

  /// The cached value, or nothing on a miss or when Redis cannot be reached.
  std::optional<std::string> get(std::string_view key);

  /// Stores `value` with a time to live; false when Redis cannot be reached.
  bool set(std::string_view key, std::string_view value, int ttl_s);

  /// Stores `value`, whose JSON has a numeric "version", unless the cached value's version is
  /// newer: a writer that read before a newer change cannot put its older copy over the
  /// newer copy or over the tombstone that change left (see product_store::forget_cached).
  /// False when Redis cannot be reached (the cache is then marked for a flush).
  bool set_unless_newer(std::string_view key, std::string_view value, std::int64_t version,
                        int ttl_s);

  /// Removes `key`; false when Redis cannot be reached.
  bool del(std::string_view key);

  /// Answers PING.
  bool ping();

  /// The process-wide state of Redis: 0 closed (in use), 1 open (bypassed), 2 half-open.
  static int breaker_state();

  /// True while a write could not reach Redis and the cache has not been flushed since: reads
  /// then bypass it, so that no value older than an acknowledged write is ever served.
  static bool flush_pending();

 private:
  /// Connected context or nullptr. A circuit breaker shared by all workers decides when to try
  /// a dead Redis again, so an outage costs one attempt per open period, not one per request.
  redisContext* context();
  /// Drops the connection after an error; `write` when a set/del failed (the cache may now hold
  /// a value older than the database's).
  void fail(bool write);

  redis_options opts_;
  redis_endpoint endpoint_;
  redisContext* ctx_ = nullptr;
  shared_state* shared_; ///< the breaker and flush flag of this Redis server
};

} // namespace emporium::persistence
