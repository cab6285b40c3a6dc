#pragma once
/// The Redis cache client (hiredis). Blocking, like pg_session: one instance per worker thread.
/// Redis is only ever a cache here: every failure degrades to "miss" and the caller reads
/// PostgreSQL, so an outage makes reads slower, never wrong or failed.

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

struct redisContext;

namespace emporium::persistence {

struct redis_options {
  std::string url;
  int timeout_ms = 200;
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

  /// Removes `key`; false when Redis cannot be reached.
  bool del(std::string_view key);

  /// Answers PING.
  bool ping();

 private:
  /// Connected context or nullptr; after a failure waits `reconnect_delay` before trying again,
  /// so a Redis outage costs one connect attempt per second per worker, not one per request.
  redisContext* context();
  void fail();

  redis_options opts_;
  std::string host_;
  int port_ = 6379;
  std::string password_;
  int db_ = 0;
  redisContext* ctx_ = nullptr;
  std::chrono::steady_clock::time_point retry_at_{};
};

} // namespace emporium::persistence
