#pragma once
/// Token-bucket rate limiting per client identity and route class.
///
/// `local` mode keeps the buckets in this process: a sharded map with LRU eviction, so a flood
/// of distinct clients cannot grow memory past rate_limit.max_buckets. `redis` mode keeps one
/// bucket per client in Redis, updated atomically by a Lua script, so every node draws from the
/// same quota. Redis is never called from an I/O thread: a dedicated limiter thread owns the
/// hiredis connection, drains the queue of waiting requests in batches and pipelines them. When
/// Redis is unreachable or late, the request is decided by the local bucket instead: limiting
/// goes on, nothing fails, and the outage is logged once and counted in the metrics.

#include "config/settings.hpp"

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace emporium::http {

/// Route classes, each with its own bucket per client. Health probes have none: they are
/// never limited (gateway::is_health_probe).
enum class route_class { read, write, login, signup };
inline constexpr int route_class_count = 4;
const char* to_string(route_class c);

/// The limiter's key of a client's bucket (gateway: "c:<customer>", "t:admin", "a:<address>")
/// in route class `c`: what requests and WebSocket subscribes of that client draw from.
std::string limit_key(route_class c, std::string_view bucket);

struct bucket_params {
  double capacity = 1;
  double refill_per_s = 1;
};

/// One bucket's state: tokens at `stamp_s` (seconds on the limiter's clock).
struct bucket_state {
  double tokens = 0;
  double stamp_s = 0;
};

/// What the limiter decided, with the numbers for the RateLimit-* and Retry-After headers.
struct limit_decision {
  bool allowed = true;
  int limit = 0;               ///< RateLimit-Limit: the bucket's capacity
  int remaining = 0;           ///< RateLimit-Remaining: whole tokens left
  int reset_s = 0;             ///< RateLimit-Reset: seconds until the bucket is full again
  int retry_after_s = 0;       ///< Retry-After when refused: seconds until one token is back
  bool local_fallback = false; ///< redis mode, decided locally (Redis unreachable or late)
};

/// The detail of the 429 that answers a refused decision.
std::string refusal_detail(const limit_decision& d);

/// The numbers of a decision, given the tokens left after it.
limit_decision make_decision(bool allowed, double tokens_left, const bucket_params& p);

/// Refills `b` up to `now_s` and takes one token if there is one. Pure: tests drive the clock.
limit_decision take_token(bucket_state& b, const bucket_params& p, double now_s);

/// The in-process buckets: sharded by key, each shard an LRU list bounded in size.
class local_buckets {
 public:
  explicit local_buckets(std::size_t max_buckets);
  ~local_buckets();
  local_buckets(const local_buckets&) = delete;
  local_buckets& operator=(const local_buckets&) = delete;

  /// Takes a token from the bucket of `key` at time `now_s` (a new bucket starts full).
  limit_decision take(const std::string& key, const bucket_params& p, double now_s);
  /// Buckets held now.
  std::size_t size() const;

 private:
  struct shard;
  std::size_t per_shard_;
  std::unique_ptr<shard[]> shards_;
};

/// Seconds on a steady clock, for local_buckets.
double steady_seconds();

/// The Lua script of redis mode (KEYS[1] the bucket; ARGV capacity, refill per second):
/// answers {allowed (0|1), tokens left (string)}. Time comes from Redis, so nodes whose clocks
/// disagree still share one bucket correctly.
extern const char* const redis_token_bucket_script;

class rate_limiter {
 public:
  using done_fn = std::function<void(limit_decision)>;

  rate_limiter(const config::rate_limit_settings& rl, const config::redis_settings& redis);
  ~rate_limiter(); ///< stops the limiter thread; waiting requests are decided locally
  rate_limiter(const rate_limiter&) = delete;
  rate_limiter& operator=(const rate_limiter&) = delete;

  /// The bucket parameters of a class, after the per-class overrides.
  const bucket_params& params(route_class c) const;

  /// local mode: decides now. redis mode: nothing; use `submit`.
  std::optional<limit_decision> try_now(route_class c, const std::string& key);

  /// redis mode: queues the decision; `done` runs later on the limiter thread, exactly once.
  void submit(route_class c, std::string key, done_fn done);

  bool redis_mode() const { return redis_ != nullptr; }

 private:
  class redis_worker;
  bucket_params params_[route_class_count];
  local_buckets local_;
  std::unique_ptr<redis_worker> redis_;
};

} // namespace emporium::http
