#include "persistence/cache.hpp"

#include "config/settings.hpp"
#include "persistence/breaker.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

namespace emporium::persistence {

/// Set when a write (set/del) failed: Redis may hold a value older than PostgreSQL's. Cleared
/// by a FLUSHDB on the first connection after Redis is reachable again; until then reads bypass
/// Redis. Redis is only a cache here, so flushing costs warm-up, never data. Process-wide: the
/// write that failed may have gone through another client than the next read.
namespace {
std::atomic<bool> needs_flush{false};
std::mutex flush_mtx;
} // namespace

/// What every connection to one Redis server shares.
struct shared_state {
  explicit shared_state(const redis_options& o)
    : breaker("Redis", o.breaker_threshold, std::chrono::milliseconds(o.breaker_open_ms)) {}
  circuit_breaker breaker;
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
      fail(false);
      return nullptr;
    }
    // A completed connect proves nothing: a frozen or partitioned Redis still completes the TCP
    // handshake (the kernel does). Only an answer may close the breaker; otherwise every probe
    // would reset the failure count and each request would pay a timeout again.
    if (!command_ok(static_cast<redisReply*>(redisCommand(ctx_, "PING")))) {
      fail(false);
      return nullptr;
    }
    sh.breaker.on_success();
  }
  if (needs_flush.load()) {
    std::lock_guard<std::mutex> guard{flush_mtx};
    if (needs_flush.load()) {
      if (!command_ok(static_cast<redisReply*>(redisCommand(ctx_, "FLUSHDB")))) {
        fail(false);
        return nullptr;
      }
      needs_flush.store(false);
      spdlog::warn("Redis flushed: a write could not reach it, so it may have held stale values");
    }
  }
  return ctx_;
}

void redis_cache::fail(bool write) {
  // hiredis contexts are unusable after any I/O error or timeout.
  if (ctx_) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  if (write)
    needs_flush.store(true);
  cache_stats().errors.fetch_add(1, std::memory_order_relaxed);
  shared_->breaker.on_failure();
}

int redis_cache::breaker_state() {
  auto* p = primary.load();
  return p ? static_cast<int>(p->breaker.current()) : 0;
}

bool redis_cache::flush_pending() {
  return needs_flush.load();
}

std::optional<std::string> redis_cache::get(std::string_view key) {
  auto* c = context();
  if (!c || needs_flush.load()) {
    cache_stats().misses.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  reply_ptr r{static_cast<redisReply*>(redisCommand(c, "GET %b", key.data(), key.size()))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fail(false);
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

bool redis_cache::set(std::string_view key, std::string_view value, int ttl_s) {
  auto* c = context();
  if (!c) {
    needs_flush.store(true);
    return false;
  }
  reply_ptr r{static_cast<redisReply*>(
    redisCommand(c, "SET %b %b EX %d", key.data(), key.size(), value.data(), value.size(), ttl_s))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fail(true);
    return false;
  }
  return true;
}

namespace {

/// Compare-and-set on the version inside the cached JSON, atomic in Redis. An unreadable cached
/// value counts as older. Redis scripts must name every key they touch: KEYS[1] only.
constexpr const char* set_unless_newer_lua = R"lua(
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and type(doc) == 'table' then
    local v = tonumber(doc['version'])
    if v and v > tonumber(ARGV[2]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
)lua";

} // namespace

bool redis_cache::set_unless_newer(std::string_view key, std::string_view value,
                                   std::int64_t version, int ttl_s) {
  auto* c = context();
  if (!c) {
    needs_flush.store(true);
    return false;
  }
  auto v = std::to_string(version);
  auto ttl = std::to_string(ttl_s);
  reply_ptr r{static_cast<redisReply*>(
    redisCommand(c, "EVAL %s 1 %b %b %b %b", set_unless_newer_lua, key.data(), key.size(),
                 value.data(), value.size(), v.data(), v.size(), ttl.data(), ttl.size()))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    if (r)
      spdlog::warn("Redis refused a versioned write: {}", std::string(r->str, r->len));
    fail(true);
    return false;
  }
  return true;
}

bool redis_cache::del(std::string_view key) {
  auto* c = context();
  if (!c) {
    needs_flush.store(true);
    return false;
  }
  reply_ptr r{static_cast<redisReply*>(redisCommand(c, "DEL %b", key.data(), key.size()))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fail(true);
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
    fail(false);
    return false;
  }
  return true;
}

} // namespace emporium::persistence
