#include "persistence/cache.hpp"

#include "config/settings.hpp"
#include "core/ids.hpp"
#include "persistence/breaker.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace emporium::persistence {

/// What every connection to one Redis server shares.
struct shared_state {
  explicit shared_state(const redis_options& o)
    : breaker("Redis", o.breaker_threshold, std::chrono::milliseconds(o.breaker_open_ms)) {}
  circuit_breaker breaker;

  /// Keys whose write failed, each with the sequence number of its latest failure: an
  /// invalidation removes a key only if no write of it failed again while the DEL ran.
  std::mutex pending_mtx;
  std::unordered_map<std::string, std::uint64_t> pending;
  std::uint64_t next_seq = 0;
  /// Until when every read bypasses Redis because a failed write found the set full.
  std::chrono::steady_clock::time_point overflow_until{};
  /// pending.size(), or more while overflowing: the lock-free test of every read.
  std::atomic<std::size_t> suspects{0};
  /// One connection at a time sends the invalidations.
  std::mutex invalidate_mtx;
};

namespace {

struct reply_deleter {
  void operator()(redisReply* r) const noexcept {
    if (r)
      freeReplyObject(r);
  }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

timeval to_timeval(std::chrono::milliseconds timeout) {
  const auto ms = timeout.count();
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

/// One shared state per Redis server (a process normally talks to one; tests use several).
shared_state& shared_for(const redis_options& o) {
  static std::mutex mtx;
  static std::map<std::string, std::unique_ptr<shared_state>> states;
  std::lock_guard<std::mutex> guard{mtx};
  auto& slot = states[o.url];
  if (!slot)
    slot = std::make_unique<shared_state>(o);
  return *slot;
}

/// The state of the first Redis this process used: the one /metrics and /readyz report.
std::atomic<shared_state*> primary{nullptr};

} // namespace

redis_endpoint parse_redis_url(const std::string& url) {
  auto parts = config::parse_url("redis.url", url, {"redis"});
  redis_endpoint e;
  e.host = parts.host;
  e.port = parts.port;
  e.password = parts.password;
  if (!parts.path.empty())
    e.db = std::atoi(parts.path.c_str());
  return e;
}

redisContext* connect_redis(const redis_endpoint& endpoint, std::chrono::milliseconds timeout,
                            std::string& error) {
  auto tv = to_timeval(timeout);
  redisContext* ctx = redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port, tv);
  if (!ctx) {
    error = "cannot allocate a Redis context";
    return nullptr;
  }
  auto failed = [&](std::string why) {
    error = std::move(why);
    redisFree(ctx);
    return nullptr;
  };
  if (ctx->err)
    return failed(ctx->errstr);
  redisSetTimeout(ctx, tv);
  auto command_ok = [&](const char* what, void* raw) {
    reply_ptr r{static_cast<redisReply*>(raw)};
    if (r && r->type != REDIS_REPLY_ERROR)
      return true;
    error = std::string{what} + ": " + (r ? r->str : (ctx->errstr[0] ? ctx->errstr : "no answer"));
    return false;
  };
  if (!endpoint.password.empty()
      && !command_ok(
        "AUTH", redisCommand(ctx, "AUTH %b", endpoint.password.data(), endpoint.password.size())))
    return failed(error);
  if (endpoint.db != 0 && !command_ok("SELECT", redisCommand(ctx, "SELECT %d", endpoint.db)))
    return failed(error);
  return ctx;
}

cache_counters& cache_stats() {
  static cache_counters counters;
  return counters;
}

redis_cache::redis_cache(redis_options opts) : opts_(std::move(opts)), shared_(&shared_for(opts_)) {
  shared_state* none = nullptr;
  primary.compare_exchange_strong(none, shared_);
  endpoint_ = parse_redis_url(opts_.url);
}

redis_cache::~redis_cache() {
  if (ctx_)
    redisFree(ctx_);
}

redisContext* redis_cache::context() {
  auto& sh = *shared_;
  auto command_ok = [this](redisReply* raw) {
    reply_ptr r{raw};
    return r && r->type != REDIS_REPLY_ERROR;
  };
  if (!ctx_) {
    if (!sh.breaker.allow())
      return nullptr;
    std::string error;
    ctx_ = connect_redis(endpoint_, std::chrono::milliseconds(opts_.timeout_ms), error);
    if (!ctx_) {
      fail();
      return nullptr;
    }
    // A completed connect proves nothing: a frozen or partitioned Redis still completes the TCP
    // handshake (the kernel does). Only an answer may close the breaker; otherwise every probe
    // would reset the failure count and each request would pay a timeout again.
    if (!command_ok(static_cast<redisReply*>(redisCommand(ctx_, "PING")))) {
      fail();
      return nullptr;
    }
    sh.breaker.on_success();
  }
  // Before anything is read or written on it: whatever a failed write may have left stale goes.
  if (sh.suspects.load() > 0 && !invalidate_pending()) {
    fail();
    return nullptr;
  }
  return ctx_;
}

namespace {
std::mutex generations_mtx;
std::vector<std::string> generations; ///< retire_after_failures
} // namespace

void redis_cache::retire_after_failures(std::string key) {
  std::lock_guard<std::mutex> guard{generations_mtx};
  if (std::find(generations.begin(), generations.end(), key) == generations.end())
    generations.push_back(std::move(key));
}

void redis_cache::fail() {
  // hiredis contexts are unusable after any I/O error or timeout.
  if (ctx_) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  cache_stats().errors.fetch_add(1, std::memory_order_relaxed);
  shared_->breaker.on_failure();
  std::vector<std::string> retire;
  {
    std::lock_guard<std::mutex> guard{generations_mtx};
    retire = generations;
  }
  for (const auto& key : retire)
    failed_write(key);
}

void redis_cache::failed_write(std::string_view key) {
  auto& sh = *shared_;
  std::lock_guard<std::mutex> guard{sh.pending_mtx};
  auto it = sh.pending.find(std::string{key});
  if (it != sh.pending.end()) {
    it->second = ++sh.next_seq;
  } else if (sh.pending.size() < max_pending_invalidations) {
    sh.pending.emplace(std::string{key}, ++sh.next_seq);
  } else {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(longest_stale_s);
    if (sh.overflow_until < until) {
      if (sh.overflow_until < std::chrono::steady_clock::now())
        spdlog::warn(
          "Redis: more than {} keys wait for invalidation; every read bypasses Redis "
          "for {} s",
          max_pending_invalidations, longest_stale_s);
      sh.overflow_until = until;
    }
  }
  sh.suspects.store(sh.pending.size()
                    + (sh.overflow_until > std::chrono::steady_clock::now() ? 1 : 0));
}

bool redis_cache::suspect(std::string_view key) const {
  auto& sh = *shared_;
  if (sh.suspects.load() == 0)
    return false;
  std::lock_guard<std::mutex> guard{sh.pending_mtx};
  if (sh.overflow_until > std::chrono::steady_clock::now())
    return true;
  return sh.pending.count(std::string{key}) > 0;
}

bool redis_cache::invalidate_pending() {
  auto& sh = *shared_;
  std::lock_guard<std::mutex> one_at_a_time{sh.invalidate_mtx};
  std::vector<std::pair<std::string, std::uint64_t>> batch;
  {
    std::lock_guard<std::mutex> guard{sh.pending_mtx};
    if (sh.overflow_until <= std::chrono::steady_clock::now())
      sh.suspects.store(sh.pending.size());
    batch.assign(sh.pending.begin(), sh.pending.end());
  }
  if (batch.empty())
    return true;
  // DEL in chunks: one round trip per 500 keys.
  constexpr std::size_t chunk = 500;
  for (std::size_t from = 0; from < batch.size(); from += chunk) {
    auto to = std::min(batch.size(), from + chunk);
    std::vector<const char*> argv{"DEL"};
    std::vector<std::size_t> lens{3};
    for (auto i = from; i < to; ++i) {
      argv.push_back(batch[i].first.data());
      lens.push_back(batch[i].first.size());
    }
    reply_ptr r{static_cast<redisReply*>(
      redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()))};
    if (!r || r->type == REDIS_REPLY_ERROR)
      return false;
  }
  std::lock_guard<std::mutex> guard{sh.pending_mtx};
  for (const auto& [key, seq] : batch)
    if (auto it = sh.pending.find(key); it != sh.pending.end() && it->second == seq)
      sh.pending.erase(it);
  sh.suspects.store(sh.pending.size()
                    + (sh.overflow_until > std::chrono::steady_clock::now() ? 1 : 0));
  spdlog::info("Redis: {} keys invalidated after writes that had failed", batch.size());
  return true;
}

int redis_cache::breaker_state() {
  auto* p = primary.load();
  return p ? static_cast<int>(p->breaker.current()) : 0;
}

std::size_t redis_cache::pending_invalidations() {
  auto* p = primary.load();
  if (!p)
    return 0;
  std::lock_guard<std::mutex> guard{p->pending_mtx};
  return p->pending.size();
}

std::optional<std::string> redis_cache::get(std::string_view key) {
  // context() first: a connection that reaches Redis invalidates the pending keys, after
  // which they may be read again.
  auto* c = context();
  if (!c || suspect(key)) {
    cache_stats().misses.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  reply_ptr r{static_cast<redisReply*>(redisCommand(c, "GET %b", key.data(), key.size()))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fail();
    cache_stats().misses.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  if (r->type != REDIS_REPLY_STRING) {
    cache_stats().misses.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  cache_stats().hits.fetch_add(1, std::memory_order_relaxed);
  return std::string(r->str, r->len);
}

std::vector<std::optional<std::string>> redis_cache::get_many(
  const std::vector<std::string>& keys) {
  std::vector<std::optional<std::string>> out(keys.size());
  auto* c = context();
  if (!c || keys.empty()) {
    cache_stats().misses.fetch_add(keys.size(), std::memory_order_relaxed);
    return out;
  }
  std::vector<const char*> argv{"MGET"};
  std::vector<std::size_t> lens{4};
  for (const auto& k : keys) {
    argv.push_back(k.data());
    lens.push_back(k.size());
  }
  reply_ptr r{static_cast<redisReply*>(
    redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()))};
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != keys.size()) {
    fail();
    cache_stats().misses.fetch_add(keys.size(), std::memory_order_relaxed);
    return out;
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto* e = r->element[i];
    if (e->type == REDIS_REPLY_STRING && !suspect(keys[i])) {
      out[i] = std::string(e->str, e->len);
      cache_stats().hits.fetch_add(1, std::memory_order_relaxed);
    } else {
      cache_stats().misses.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return out;
}

std::optional<std::string> redis_cache::generation(std::string_view key, int ttl_s) {
  if (auto v = get(key))
    return v;
  // Missing, or Redis is out of reach: only a live Redis gets a new token (a failed SET would
  // needlessly leave the key to invalidate).
  if (shared_->breaker.current() != circuit_breaker::state::closed || !ping())
    return std::nullopt;
  // Random, never a reused value: a token once deleted never comes back with values cached
  // before the delete.
  auto fresh = core::random_hex(12);
  if (!set(key, fresh, ttl_s))
    return std::nullopt;
  return fresh;
}

bool redis_cache::set(std::string_view key, std::string_view value, int ttl_s) {
  auto* c = context();
  if (!c) {
    failed_write(key);
    return false;
  }
  reply_ptr r{static_cast<redisReply*>(
    redisCommand(c, "SET %b %b EX %d", key.data(), key.size(), value.data(), value.size(), ttl_s))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fail();
    failed_write(key);
    return false;
  }
  return true;
}

bool redis_cache::del(std::string_view key) {
  auto* c = context();
  if (!c) {
    failed_write(key);
    return false;
  }
  reply_ptr r{static_cast<redisReply*>(redisCommand(c, "DEL %b", key.data(), key.size()))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fail();
    failed_write(key);
    return false;
  }
  return true;
}

bool redis_cache::ping() {
  auto* c = context();
  if (!c)
    return false;
  reply_ptr r{static_cast<redisReply*>(redisCommand(c, "PING"))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fail();
    return false;
  }
  return true;
}

} // namespace emporium::persistence
