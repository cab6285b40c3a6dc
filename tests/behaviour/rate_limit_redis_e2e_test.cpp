// End-to-end: the rate limiter in redis mode (http/rate_limiter.cpp) when Redis hangs and when
// Redis lost its scripts. On a Redis that does not answer within rate_limit.redis_timeout_ms
// the limiter neither admits everyone (fail open) nor refuses everyone (fail closed): it decides
// on this node's local buckets, with the same capacities, until Redis answers again. After
// SCRIPT FLUSH the first EVALSHA gets NOSCRIPT: that request is decided locally, the script is
// loaded again, and the requests after it are limited by the shared bucket in Redis as before.
// Each test runs a redis-server of its own and freezes only that one.

#include "behaviour/behaviour_support.hpp"
#include "e2e/commerce_support.hpp"
#include "gateway/gateway_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using namespace std::chrono_literals;

const char* const read_target = "/products?limit=1";

int remaining(const http_response& r) {
  auto v = r.header("RateLimit-Remaining");
  INFO("RateLimit-Remaining: '" << v << "'");
  REQUIRE_FALSE(v.empty());
  return std::stoi(v);
}

header_map from(const std::string& address) {
  return {{"X-Forwarded-For", address}};
}

double metric(const server_process& srv, const std::string& sample) {
  auto v = metric_value(scrape(srv), sample);
  INFO(sample);
  REQUIRE(v);
  return *v;
}

} // namespace

TEST_CASE(
  "rate limit: with Redis hanging, every request is answered and limited locally, and "
  "once Redis answers again the buckets are shared through it",
  "[e2e][rate][redis][freezes]") {
  redis_process redis;
  server_process srv{{{"EMPORIUM_RATE_LIMIT_MODE", "redis"},
                      {"EMPORIUM_REDIS_URL", redis.url()},
                      {"EMPORIUM_HTTP_TRUSTED_PROXIES", "127.0.0.1"},
                      {"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "4"},
                      {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "0.01"},
                      {"EMPORIUM_RATE_LIMIT_REDIS_TIMEOUT_MS", "200"}}};
  // Every read below must come back well inside this bound (Redis waits are 200 ms at most).
  http_client c{srv.host(), srv.port(), 5'000ms};
  // The limiter connects on its first request.
  REQUIRE(c.get(read_target, from(fresh_address())).status == 200);
  REQUIRE(metric(srv, "emporium_rate_limit_redis_up") == 1.0);
  auto pid = redis_pid(redis.url());
  redis_client admin_link{redis.url()};

  auto during = fresh_address();
  {
    frozen_process frozen{pid};
    std::vector<int> statuses;
    for (int i = 0; i < 10; ++i) {
      auto r = c.get(read_target, from(during));
      INFO("request " << i << " while Redis hangs: " << show(r));
      REQUIRE((r.status == 200 || r.status == 429));
      statuses.push_back(r.status);
    }
    // Limited, not open and not closed: the capacity, then refusals.
    CHECK(std::count(statuses.begin(), statuses.end(), 200) == 4);
    CHECK(std::count(statuses.begin(), statuses.end(), 429) == 6);
    CHECK(std::all_of(statuses.begin(), statuses.begin() + 4, [](int s) { return s == 200; }));
    CHECK(metric(srv, "emporium_rate_limit_redis_up") == 0.0);
    CHECK(metric(srv, "emporium_rate_limit_redis_fallbacks_total") >= 10.0);
  }
  // Thawed: within a few reconnect delays (1 s each) the limiter uses Redis again, and a new
  // client's bucket is kept there.
  auto after = fresh_address();
  bool shared = false;
  for (int i = 0; i < 50 && !shared; ++i) {
    std::this_thread::sleep_for(200ms);
    auto r = c.get(read_target, from(fresh_address()));
    REQUIRE((r.status == 200));
    shared = metric(srv, "emporium_rate_limit_redis_up") == 1.0;
  }
  REQUIRE(shared);
  REQUIRE(c.get(read_target, from(after)).status == 200);
  CHECK(admin_link.command({"EXISTS", "emporium:rl:read:a:" + after}) == "1");
}

TEST_CASE(
  "rate limit: after SCRIPT FLUSH the limiter loads its script again and goes on "
  "limiting through Redis",
  "[e2e][rate][redis]") {
  redis_process redis;
  server_process srv{{{"EMPORIUM_RATE_LIMIT_MODE", "redis"},
                      {"EMPORIUM_REDIS_URL", redis.url()},
                      {"EMPORIUM_HTTP_TRUSTED_PROXIES", "127.0.0.1"},
                      {"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "5"},
                      {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "0.01"},
                      {"EMPORIUM_RATE_LIMIT_REDIS_TIMEOUT_MS", "2000"}}};
  http_client c{srv.host(), srv.port()};
  redis_client link{redis.url()};
  auto client = fresh_address();
  auto key = "emporium:rl:read:a:" + client;
  for (int i = 0; i < 2; ++i) {
    auto r = c.get(read_target, from(client));
    REQUIRE(r.status == 200);
    CHECK(remaining(r) == 4 - i);
  }
  REQUIRE(link.command({"EXISTS", key}) == "1");
  auto fallbacks_before = metric(srv, "emporium_rate_limit_redis_fallbacks_total");

  REQUIRE(link.command({"SCRIPT", "FLUSH"}) == "OK");

  // The first request meets NOSCRIPT and is decided on the (full) local bucket.
  auto first = c.get(read_target, from(client));
  INFO(show(first));
  REQUIRE(first.status == 200);
  CHECK(metric(srv, "emporium_rate_limit_redis_fallbacks_total") == fallbacks_before + 1);
  // Every later one by the bucket in Redis, which still holds the 3 tokens left before.
  for (int left = 2; left >= 0; --left) {
    auto r = c.get(read_target, from(client));
    INFO(show(r));
    REQUIRE(r.status == 200);
    CHECK(remaining(r) == left);
  }
  for (int i = 0; i < 3; ++i)
    CHECK(c.get(read_target, from(client)).status == 429);
  CHECK(metric(srv, "emporium_rate_limit_redis_fallbacks_total") == fallbacks_before + 1);
  CHECK(metric(srv, "emporium_rate_limit_redis_up") == 1.0);
}
