// End-to-end: the connection's watchdog (http/server.cpp arm_watchdog). A request still without
// an answer at http.request_timeout_ms + 1 s gets 504 problem+json, and its connection goes on
// serving the requests after it. The hang: POST /carts inserts into `carts`, which the test
// holds locked; its database job is bounded by postgres.statement_timeout_ms (+ 500 ms), set far
// beyond the watchdog, so that only the watchdog can answer in time.

#include "e2e/commerce_support.hpp"
#include "gateway/gateway_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <optional>
#include <string>

namespace {

using namespace emporium::test;
using namespace std::chrono_literals;

} // namespace

TEST_CASE("watchdog: a request that gets no answer within http.request_timeout_ms gets 504 "
          "problem+json, and the connection stays usable",
          "[e2e][watchdog]") {
  // Watchdog at 500 + 1000 ms; the database job waits for up to 30.5 s; the client gives up
  // at 10 s (it would fail the test) — between the two.
  server_process srv{{{"EMPORIUM_HTTP_REQUEST_TIMEOUT_MS", "500"},
                      {"EMPORIUM_POSTGRES_STATEMENT_TIMEOUT_MS", "30000"}}};
  http_client c{srv.host(), srv.port(), 10'000ms};
  // Signed up and logged in through the shared server (same database, same token key): hashing
  // a password takes longer than this server's 500 ms.
  http_client shared{shared_server().host(), shared_server().port()};
  auto who = new_customer(shared);
  // The token is verified once before the lock, so that only the insert waits.
  REQUIRE(c.get("/customers/" + who.id, bearer(who.tokens[0])).status == 200);
  auto opened = c.connections_opened();

  std::optional<http_response> hung;
  {
    // Rolled back (and the lock released) when the block ends, also when the test fails.
    pqxx::connection conn{pg_url()};
    pqxx::work lock{conn};
    lock.exec0("LOCK TABLE carts IN ACCESS EXCLUSIVE MODE");
    hung = c.request("POST", "/carts", "", bearer(who.tokens[0]));
  }
  INFO(show(*hung));
  auto problem = check_problem(*hung, 504);
  CHECK(hung->header("content-type").find("application/problem+json") == 0);
  CHECK(problem.at("status") == 504);

  // The same connection: the late answer of the insert (it completes once the lock is gone)
  // is never sent in place of the answers to the requests that follow.
  for (int i = 0; i < 3; ++i) {
    auto health = c.get("/healthz");
    INFO(show(health));
    REQUIRE(health.status == 200);
    CHECK(health.json().at("status") == "ok");
    auto me = c.get("/customers/" + who.id, bearer(who.tokens[0]));
    INFO(show(me));
    REQUIRE(me.status == 200);
    CHECK(me.json().at("id") == who.id);
  }
  CHECK(c.connections_opened() == opened);
}
