#pragma once
/// The Redis cache client (hiredis). Blocking, like pg_session: one instance per worker thread.
/// Redis is only ever a cache here: every failure degrades to "miss" and the caller reads
/// PostgreSQL, so an outage makes reads slower, never wrong or failed.
///
/// Several nodes share one Redis, so nothing here may clear it as a whole. A write (SET, DEL)
/// that fails leaves Redis possibly holding an older value of that key: the key is recorded as
/// a pending invalidation (per Redis server, at most `max_pending_invalidations`), its reads
/// bypass Redis, and the first connection that reaches Redis again DELs every recorded key
/// before it serves anything. What a process cannot record (it restarted, or the set was full)
/// ends by time: every value this program caches lives at most `longest_stale_s`.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

/// How many failed writes' keys are remembered for invalidation. Beyond that, the next failed
/// write makes every read bypass Redis for `longest_stale_s` after it (reads are then slower,
/// never stale), while the recorded keys are still deleted when Redis is back.
inline constexpr std::size_t max_pending_invalidations = 10'000;

/// The longest a value written to Redis by this program can outlive the write that made it
/// stale: the lifetime of a cached search result or session copy (the catalog version token
/// lives longer, but a stale token only names results that expire within this time).
inline constexpr int longest_stale_s = 300;

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

  /// The values of `keys` in one round trip (MGET), each nothing on a miss; all nothing when
  /// Redis cannot be reached.
  std::vector<std::optional<std::string>> get_many(const std::vector<std::string>& keys);

  /// Stores `value` with a time to live; false when Redis cannot be reached (the key is then a
  /// pending invalidation: Redis may still hold an older value of it).
  bool set(std::string_view key, std::string_view value, int ttl_s);

  /// Removes `key`; false when Redis cannot be reached (the key is then a pending
  /// invalidation).
  bool del(std::string_view key);

  /// Answers PING.
  bool ping();

  /// The current generation under `key`: a random token naming a family of cached values
  /// (their keys or values carry it), so that deleting the token retires them all at once. Made
  /// when there is none and Redis answers; nothing when Redis cannot be used (then the family
  /// must be bypassed). Two makers racing: the later SET wins, the values cached under the
  /// other token are never read (a miss, never wrong).
  std::optional<std::string> generation(std::string_view key, int ttl_s);

  /// Makes `key` (a generation token, see generation()) a pending invalidation whenever this
  /// process finds Redis failing: another process may have failed to write Redis meanwhile,
  /// and the token's deletion when Redis is back retires whatever such a write left stale.
  /// Process-wide, for every Redis server; called at start.
  static void retire_after_failures(std::string key);

  /// The process-wide state of Redis: 0 closed (in use), 1 open (bypassed), 2 half-open.
  static int breaker_state();

  /// How many keys whose write failed wait to be deleted from the first Redis this process
  /// used (the one /metrics reports). Their reads bypass Redis meanwhile.
  static std::size_t pending_invalidations();

 private:
  /// Connected context or nullptr. A circuit breaker shared by all workers decides when to try
  /// a dead Redis again, so an outage costs one attempt per open period, not one per request.
  redisContext* context();
  /// Drops the connection after an error.
  void fail();
  /// Records `key` for invalidation: a write of it failed.
  void failed_write(std::string_view key);
  /// Whether `key` must not be read from Redis now (its invalidation is pending).
  bool suspect(std::string_view key) const;
  /// DELs the pending invalidations on the current connection; false when that failed.
  bool invalidate_pending();

  redis_options opts_;
  redis_endpoint endpoint_;
  redisContext* ctx_ = nullptr;
  shared_state* shared_; ///< the breaker and pending invalidations of this Redis server
};

} // namespace emporium::persistence
