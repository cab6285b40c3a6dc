#include "http/rate_limiter.hpp"

#include "http/metrics.hpp"
#include "persistence/cache.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <list>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace emporium::http {

namespace {

using steady = std::chrono::steady_clock;

constexpr std::size_t shard_count = 16;
constexpr std::size_t max_batch = 256;
/// After a failed connection, the limiter waits this long before trying Redis again; in the
/// meantime every request is decided locally at once.
constexpr auto reconnect_delay = std::chrono::seconds(1);

/// Tokens a hair below a whole one (float error) still count as one.
constexpr double epsilon = 1e-9;

int ceil_seconds(double s) {
  if (!(s > 0))
    return 0;
  auto v = std::ceil(s - epsilon);
  return v > 1e9 ? 1'000'000'000 : static_cast<int>(v);
}

int clamp_int(double v) {
  return v > 2e9 ? 2'000'000'000 : static_cast<int>(v);
}

struct reply_deleter {
  void operator()(redisReply* r) const noexcept {
    if (r)
      freeReplyObject(r);
  }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

/// Numbers for Redis arguments: enough digits that 0.2 tokens a second stays 0.2.
std::string arg_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

} // namespace

std::string limit_key(route_class c, std::string_view bucket) {
  return std::string{to_string(c)} + ":" + std::string{bucket};
}

std::string refusal_detail(const limit_decision& d) {
  return "too many requests from this client; retry after " + std::to_string(d.retry_after_s)
         + " s";
}

const char* to_string(route_class c) {
  switch (c) {
    case route_class::read: return "read";
    case route_class::write: return "write";
    case route_class::login: return "login";
    case route_class::signup: return "signup";
  }
  return "read";
}

const char* const redis_token_bucket_script = R"lua(
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) + tonumber(now_t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = capacity
  stamp = now
end
if now > stamp then
  tokens = math.min(capacity, tokens + (now - stamp) * rate)
end
local allowed = 0
if tokens >= 1 - 1e-9 then
  tokens = math.max(0, tokens - 1)
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens), 'stamp', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.9f', tokens)}
)lua";

limit_decision make_decision(bool allowed, double tokens_left, const bucket_params& p) {
  limit_decision d;
  d.allowed = allowed;
  d.limit = clamp_int(p.capacity);
  tokens_left = std::max(0.0, std::min(p.capacity, tokens_left));
  d.remaining = clamp_int(std::floor(tokens_left + epsilon));
  d.reset_s = ceil_seconds((p.capacity - tokens_left) / p.refill_per_s);
  if (!allowed)
    d.retry_after_s = std::max(1, ceil_seconds((1.0 - tokens_left) / p.refill_per_s));
  return d;
}

limit_decision take_token(bucket_state& b, const bucket_params& p, double now_s) {
  if (now_s > b.stamp_s) {
    b.tokens = std::min(p.capacity, b.tokens + (now_s - b.stamp_s) * p.refill_per_s);
    b.stamp_s = now_s;
  }
  bool allowed = b.tokens >= 1.0 - epsilon;
  if (allowed)
    b.tokens = std::max(0.0, b.tokens - 1.0);
  return make_decision(allowed, b.tokens, p);
}

double steady_seconds() {
  return std::chrono::duration<double>(steady::now().time_since_epoch()).count();
}

// -- local buckets --------------------------------------------------------------------------------

struct local_buckets::shard {
  struct entry {
    std::string key;
    bucket_state state;
  };
  std::mutex mtx;
  std::list<entry> lru; ///< most recently used first
  std::unordered_map<std::string_view, std::list<entry>::iterator> index;
};

local_buckets::local_buckets(std::size_t max_buckets)
  : per_shard_(std::max<std::size_t>(1, max_buckets / shard_count)),
    shards_(new shard[shard_count]) {}

local_buckets::~local_buckets() {
  metrics::http().rate_limit_buckets.add(-static_cast<double>(size()));
}

limit_decision local_buckets::take(const std::string& key, const bucket_params& p, double now_s) {
  auto& s = shards_[std::hash<std::string>{}(key) % shard_count];
  std::lock_guard<std::mutex> guard{s.mtx};
  auto it = s.index.find(key);
  if (it != s.index.end()) {
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    return take_token(s.lru.front().state, p, now_s);
  }
  // A new client starts with a full bucket. The least recently used bucket is the one most
  // likely full again already, so dropping it is the cheapest way to stay within bounds.
  s.lru.push_front(shard::entry{key, bucket_state{p.capacity, now_s}});
  s.index.emplace(s.lru.front().key, s.lru.begin());
  int added = 1;
  while (s.lru.size() > per_shard_) {
    s.index.erase(s.lru.back().key);
    s.lru.pop_back();
    --added;
  }
  if (added != 0)
    metrics::http().rate_limit_buckets.add(added);
  return take_token(s.lru.front().state, p, now_s);
}

std::size_t local_buckets::size() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < shard_count; ++i) {
    std::lock_guard<std::mutex> guard{shards_[i].mtx};
    n += shards_[i].lru.size();
  }
  return n;
}

// -- the Redis worker -----------------------------------------------------------------------------

class rate_limiter::redis_worker {
 public:
  redis_worker(const config::redis_settings& redis, int timeout_ms, local_buckets& local,
               const bucket_params* params)
    : local_(local),
      params_(params),
      timeout_(std::chrono::milliseconds(timeout_ms)),
      endpoint_(persistence::parse_redis_url(redis.url)) {
    metrics::http().rate_limit_redis_up.set(0);
    thread_ = std::thread([this] { loop(); });
  }

  ~redis_worker() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable())
      thread_.join();
    if (ctx_)
      redisFree(ctx_);
    metrics::http().rate_limit_redis_up.set(0);
  }

  void submit(route_class c, std::string key, done_fn done) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!stopping_) {
        queue_.push_back(job{c, std::move(key), std::move(done), steady::now()});
        if (queue_.size() == 1)
          cv_.notify_one();
        return;
      }
    }
    // Stopping: nobody drains the queue any more.
    job j{c, std::move(key), std::move(done), steady::now()};
    decide_locally(j);
  }

 private:
  struct job {
    route_class cls;
    std::string key;
    done_fn done;
    steady::time_point queued;
  };

  void loop() {
    std::vector<job> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock{mtx_};
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_ && queue_.empty())
          return;
        while (!queue_.empty() && batch.size() < max_batch) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        if (stopping_) {
          // Whatever is left is decided locally: the server is going away.
          lock.unlock();
          for (auto& j : batch)
            decide_locally(j);
          batch.clear();
          continue;
        }
      }
      process(batch);
      batch.clear();
    }
  }

  void answer(job& j, limit_decision d) {
    try {
      j.done(d);
    } catch (const std::exception& e) {
      spdlog::error("rate limiter: a callback threw: {}", e.what());
    }
  }

  void decide_locally(job& j) {
    auto d = local_.take(j.key, params_[static_cast<int>(j.cls)], steady_seconds());
    d.local_fallback = true;
    metrics::http().rate_limit_fallbacks.inc();
    answer(j, d);
  }

  void process(std::vector<job>& batch) {
    auto now = steady::now();
    if (!ctx_ && now >= retry_at_)
      connect();
    if (!ctx_) {
      for (auto& j : batch)
        decide_locally(j);
      return;
    }
    // Pipelined: every command first, then every reply.
    std::vector<job*> sent;
    for (auto& j : batch) {
      if (now - j.queued > timeout_) {
        decide_locally(j); // waited too long in the queue already
        continue;
      }
      const auto& p = params_[static_cast<int>(j.cls)];
      std::string key = "emporium:rl:" + j.key;
      auto cap = arg_number(p.capacity);
      auto rate = arg_number(p.refill_per_s);
      if (redisAppendCommand(ctx_, "EVALSHA %s 1 %b %s %s", sha_.c_str(), key.data(), key.size(),
                             cap.c_str(), rate.c_str())
          != REDIS_OK) {
        decide_locally(j);
        continue;
      }
      sent.push_back(&j);
    }
    bool reload = false;
    for (std::size_t i = 0; i < sent.size(); ++i) {
      auto& j = *sent[i];
      void* raw = nullptr;
      if (redisGetReply(ctx_, &raw) != REDIS_OK) {
        // Timed out or lost: this context is unusable; the rest of the batch goes local.
        went_down(ctx_->errstr[0] ? ctx_->errstr : "no answer");
        for (; i < sent.size(); ++i)
          decide_locally(*sent[i]);
        return;
      }
      reply_ptr r{static_cast<redisReply*>(raw)};
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 2
          && r->element[0]->type == REDIS_REPLY_INTEGER
          && r->element[1]->type == REDIS_REPLY_STRING) {
        bool allowed = r->element[0]->integer == 1;
        double tokens = std::strtod(r->element[1]->str, nullptr);
        answer(j, make_decision(allowed, tokens, params_[static_cast<int>(j.cls)]));
        continue;
      }
      if (r->type == REDIS_REPLY_ERROR && std::string_view{r->str}.rfind("NOSCRIPT", 0) == 0)
        reload = true; // SCRIPT FLUSH, or another server behind the same address
      else if (!logged_bad_reply_) {
        logged_bad_reply_ = true;
        spdlog::warn("rate limiter: unexpected Redis reply (type {}): {}", r->type,
                     r->type == REDIS_REPLY_ERROR ? r->str : "");
      }
      decide_locally(j);
    }
    if (reload && !load_script())
      went_down("SCRIPT LOAD failed");
  }

  bool load_script() {
    reply_ptr r{
      static_cast<redisReply*>(redisCommand(ctx_, "SCRIPT LOAD %s", redis_token_bucket_script))};
    if (!r || r->type != REDIS_REPLY_STRING) {
      last_error_ = std::string{"SCRIPT LOAD: "}
                    + (r && r->type == REDIS_REPLY_ERROR
                         ? r->str
                         : (ctx_->errstr[0] ? ctx_->errstr : "no answer"));
      return false;
    }
    sha_.assign(r->str, r->len);
    return true;
  }

  void connect() {
    std::string error;
    ctx_ = persistence::connect_redis(endpoint_, timeout_, error);
    if (!ctx_) {
      went_down(error);
      return;
    }
    if (!load_script()) {
      went_down(last_error_);
      return;
    }
    if (up_ != true) {
      spdlog::info("rate limiter: sharing buckets through Redis at {}:{}{}", endpoint_.host,
                   endpoint_.port, up_ == false ? " again" : "");
    }
    up_ = true;
    metrics::http().rate_limit_redis_up.set(1);
  }

  /// Drops the connection; logs the outage once, when it begins.
  void went_down(const std::string& why) {
    if (ctx_) {
      redisFree(ctx_);
      ctx_ = nullptr;
    }
    retry_at_ = steady::now() + reconnect_delay;
    if (up_ != false)
      spdlog::warn(
        "rate limiter: Redis at {}:{} is unreachable ({}); limiting locally on this "
        "node until it is back",
        endpoint_.host, endpoint_.port, why);
    up_ = false;
    metrics::http().rate_limit_redis_up.set(0);
  }

  local_buckets& local_;
  const bucket_params* params_;
  std::chrono::milliseconds timeout_;
  persistence::redis_endpoint endpoint_;

  // Owned by the limiter thread.
  redisContext* ctx_ = nullptr;
  std::string sha_;
  std::string last_error_;
  std::optional<bool> up_;
  bool logged_bad_reply_ = false;
  steady::time_point retry_at_{};

  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<job> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

// -- the limiter ----------------------------------------------------------------------------------

rate_limiter::rate_limiter(const config::rate_limit_settings& rl,
                           const config::redis_settings& redis)
  : local_(static_cast<std::size_t>(rl.max_buckets)) {
  const bucket_params base{static_cast<double>(rl.capacity), rl.refill_per_s};
  params_[static_cast<int>(route_class::read)] = {
    rl.read_capacity ? static_cast<double>(*rl.read_capacity) : base.capacity,
    rl.read_refill_per_s.value_or(base.refill_per_s)};
  params_[static_cast<int>(route_class::write)] = {
    rl.write_capacity ? static_cast<double>(*rl.write_capacity) : base.capacity,
    rl.write_refill_per_s.value_or(base.refill_per_s)};
  params_[static_cast<int>(route_class::login)] = {static_cast<double>(rl.login_capacity),
                                                   rl.login_refill_per_s};
  params_[static_cast<int>(route_class::signup)] = {static_cast<double>(rl.signup_capacity),
                                                    rl.signup_refill_per_s};
  if (rl.mode == "redis")
    redis_ = std::make_unique<redis_worker>(redis, rl.redis_timeout_ms, local_, params_);
}

rate_limiter::~rate_limiter() = default;

const bucket_params& rate_limiter::params(route_class c) const {
  return params_[static_cast<int>(c)];
}

std::optional<limit_decision> rate_limiter::try_now(route_class c, const std::string& key) {
  if (redis_)
    return std::nullopt;
  return local_.take(key, params_[static_cast<int>(c)], steady_seconds());
}

void rate_limiter::submit(route_class c, std::string key, done_fn done) {
  if (!redis_) {
    auto d = local_.take(key, params_[static_cast<int>(c)], steady_seconds());
    done(d);
    return;
  }
  redis_->submit(c, std::move(key), std::move(done));
}

} // namespace emporium::http
