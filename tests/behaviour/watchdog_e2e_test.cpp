// End-to-end: the connection's watchdog (http/server.cpp arm_watchdog). A request still without
// an answer at http.request_timeout_ms + 1 s gets 504 problem+json, and its connection goes on
// serving the requests after it. Work the runtime runs is timed out by the runtime itself
// (also 504, earlier); what only the watchdog bounds is a request waiting before the runtime:
// here the rate limiter in redis mode, on a Redis frozen with SIGSTOP, waits up to
// rate_limit.redis_timeout_ms (5 s) for its decision — longer than the watchdog (1.5 s) and
// than the client's patience (4 s), so that only the watchdog can answer in time.

#include "behaviour/behaviour_support.hpp"
#include "e2e/commerce_support.hpp"
#include "gateway/gateway_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace {

using namespace emporium::test;
using namespace std::chrono_literals;

const char* const read_target = "/products?limit=1";

} // namespace

TEST_CASE(
  "watchdog: a request that gets no answer within http.request_timeout_ms gets 504 "
  "problem+json, and the connection stays usable",
  "[e2e][watchdog][freezes]") {
  redis_process redis;
  server_process srv{{{"EMPORIUM_HTTP_REQUEST_TIMEOUT_MS", "500"},
                      {"EMPORIUM_RATE_LIMIT_MODE", "redis"},
                      {"EMPORIUM_REDIS_URL", redis.url()},
                      {"EMPORIUM_RATE_LIMIT_REDIS_TIMEOUT_MS", "5000"}}};
  http_client c{srv.host(), srv.port(), 4'000ms};
  // The limiter connects to Redis on its first request.
  REQUIRE(c.get(read_target).status == 200);
  auto opened = c.connections_opened();

  std::optional<http_response> hung;
  {
    frozen_process frozen{redis_pid(redis.url())};
    hung = c.get(read_target);
    INFO(show(*hung));
    auto problem = check_problem(*hung, 504);
    CHECK(problem.at("status") == 504);
    // Health probes skip the limiter: answered on the same connection while Redis still hangs,
    // and the late answer of the request before is never sent in their place.
    auto health = c.get("/healthz");
    INFO(show(health));
    REQUIRE(health.status == 200);
    CHECK(health.json().at("status") == "ok");
  }
  for (int i = 0; i < 3; ++i) {
    auto r = c.get(read_target);
    INFO(show(r));
    REQUIRE(r.status == 200);
    CHECK(r.json().contains("items"));
  }
  CHECK(c.connections_opened() == opened);
}
