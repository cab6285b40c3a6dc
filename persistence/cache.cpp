#include "persistence/cache.hpp"

#include "config/settings.hpp"

#include <hiredis/hiredis.h>

#include <cstdlib>
#include <memory>

namespace emporium::persistence {

namespace {

constexpr auto reconnect_delay = std::chrono::seconds(1);

struct reply_deleter {
  void operator()(redisReply* r) const noexcept {
    if (r)
      freeReplyObject(r);
  }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

timeval to_timeval(int ms) {
  return timeval{ms / 1000, (ms % 1000) * 1000};
}

} // namespace

cache_counters& cache_stats() {
  static cache_counters counters;
  return counters;
}

redis_cache::redis_cache(redis_options opts) : opts_(std::move(opts)) {
  auto parts = config::parse_url("redis.url", opts_.url, {"redis"});
  host_ = parts.host;
  port_ = parts.port;
  password_ = parts.password;
  if (!parts.path.empty())
    db_ = std::atoi(parts.path.c_str());
}

redis_cache::~redis_cache() {
  if (ctx_)
    redisFree(ctx_);
}

redisContext* redis_cache::context() {
  if (ctx_)
    return ctx_;
  auto now = std::chrono::steady_clock::now();
  if (now < retry_at_)
    return nullptr;
  auto tv = to_timeval(opts_.timeout_ms);
  ctx_ = redisConnectWithTimeout(host_.c_str(), port_, tv);
  if (!ctx_ || ctx_->err) {
    fail();
    return nullptr;
  }
  redisSetTimeout(ctx_, tv);
  if (!password_.empty()) {
    reply_ptr r{static_cast<redisReply*>(redisCommand(ctx_, "AUTH %b", password_.data(),
                                                      password_.size()))};
    if (!r || r->type == REDIS_REPLY_ERROR) {
      fail();
      return nullptr;
    }
  }
  if (db_ != 0) {
    reply_ptr r{static_cast<redisReply*>(redisCommand(ctx_, "SELECT %d", db_))};
    if (!r || r->type == REDIS_REPLY_ERROR) {
      fail();
      return nullptr;
    }
  }
  return ctx_;
}

void redis_cache::fail() {
  // hiredis contexts are unusable after any I/O error or timeout.
  if (ctx_) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  cache_stats().errors.fetch_add(1, std::memory_order_relaxed);
  retry_at_ = std::chrono::steady_clock::now() + reconnect_delay;
}

std::optional<std::string> redis_cache::get(std::string_view key) {
  auto* c = context();
  if (!c) {
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

bool redis_cache::set(std::string_view key, std::string_view value, int ttl_s) {
  auto* c = context();
  if (!c)
    return false;
  reply_ptr r{static_cast<redisReply*>(redisCommand(c, "SET %b %b EX %d", key.data(), key.size(),
                                                    value.data(), value.size(), ttl_s))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fail();
    return false;
  }
  return true;
}

bool redis_cache::del(std::string_view key) {
  auto* c = context();
  if (!c)
    return false;
  reply_ptr r{static_cast<redisReply*>(redisCommand(c, "DEL %b", key.data(), key.size()))};
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fail();
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
