// End-to-end: the server's limits and graceful shutdown: the connection limit, idle
// keep-alive connections, a client trickling its header one byte a second, and SIGTERM during
// a burst of slow requests. Timing bounds here are liveness bounds with wide margins, never
// speed requirements.

#include "gateway/gateway_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

long long ms_since(steady::time_point t0) {
  return std::chrono::duration_cast<milliseconds>(steady::now() - t0).count();
}

bool serves(const server_process& srv) {
  try {
    return http_request(srv.host(), srv.port(), "GET", "/healthz", "", {}, milliseconds(3000))
             .status
           == 200;
  } catch (const std::exception&) {
    return false;
  }
}

} // namespace

TEST_CASE(
  "gateway: beyond http.max_connections a new connection gets 503 and is closed, while "
  "the open ones are served",
  "[e2e][gateway][limits]") {
  server_process srv{{{"EMPORIUM_HTTP_MAX_CONNECTIONS", "3"}}};
  std::vector<std::unique_ptr<http_client>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<http_client>(srv.host(), srv.port()));
    REQUIRE(open.back()->get("/healthz").status == 200);
  }
  http_client extra{srv.host(), srv.port(), milliseconds(5000)};
  extra.connect();
  auto got = extra.read_raw_until_close_or(milliseconds(5000));
  INFO("the fourth connection received: " << got);
  CHECK(got.rfind("HTTP/1.1 503", 0) == 0);
  CHECK(got.find("Retry-After: 1") != std::string::npos);
  CHECK(got.find("\"status\":503") != std::string::npos);
  CHECK(extra.peer_closed());
  for (auto& c : open)
    CHECK(c->get("/healthz").status == 200);
  CHECK(metric_value(open[0]->get("/metrics").body, "emporium_http_connections_refused_total")
        >= 1.0);

  // A connection closed makes room again (once the server has seen it go).
  open.pop_back();
  auto deadline = steady::now() + std::chrono::seconds(10);
  bool served = false;
  while (!served && steady::now() < deadline) {
    served = serves(srv);
    if (!served)
      std::this_thread::sleep_for(milliseconds(50));
  }
  CHECK(served);
}

TEST_CASE("gateway: an idle keep-alive connection is closed after http.idle_timeout_ms",
          "[e2e][gateway][limits]") {
  server_process srv{{{"EMPORIUM_HTTP_IDLE_TIMEOUT_MS", "1000"}}};
  http_client c{srv.host(), srv.port()};
  auto r = c.get("/healthz");
  REQUIRE(r.status == 200);
  CHECK(r.header("connection") != "close");
  auto t0 = steady::now();
  auto got = c.read_raw_until_close_or(milliseconds(10'000));
  auto after = ms_since(t0);
  INFO("closed after " << after << " ms");
  CHECK(got.empty());
  CHECK(c.peer_closed());
  CHECK(after >= 700);
  CHECK(after < 8000);
  CHECK(serves(srv));
}

TEST_CASE(
  "gateway: a client sending one header byte a second is cut off within the header "
  "timeout while other clients are served",
  "[e2e][gateway][limits]") {
  server_process srv{{{"EMPORIUM_HTTP_HEADER_TIMEOUT_MS", "3000"}}};
  http_client slow{srv.host(), srv.port(), milliseconds(5000)};
  http_client other{srv.host(), srv.port()};
  REQUIRE(other.get("/healthz").status == 200);

  auto t0 = steady::now();
  const std::string header =
    "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 0123456789\r\n\r\n";
  std::size_t sent = 0;
  bool closed = false;
  int others = 0;
  while (sent < header.size() && ms_since(t0) < 15'000) {
    if (!slow.try_send_raw(header.substr(sent, 1))) {
      closed = true;
      break;
    }
    ++sent;
    // Meanwhile, on other connections, requests are answered as usual.
    REQUIRE(other.get("/healthz").status == 200);
    REQUIRE(serves(srv));
    others += 2;
    auto got = slow.read_raw_until_close_or(milliseconds(1000)); // one byte a second
    if (slow.peer_closed()) {
      INFO("received before the close: " << got);
      CHECK(got.find("200 OK") == std::string::npos);
      closed = true;
      break;
    }
  }
  auto cut_after = ms_since(t0);
  INFO("cut after " << cut_after << " ms and " << sent << " of " << header.size() << " bytes");
  CHECK(closed);
  CHECK(sent < header.size());
  CHECK(cut_after >= 2500);  // not before the timeout
  CHECK(cut_after < 10'000); // and not long after it
  CHECK(others >= 4);
  CHECK(other.get("/healthz").status == 200);
}

TEST_CASE(
  "gateway: SIGTERM during a burst of slow requests: each accepted request gets its real "
  "answer, new connections are refused, exit status 0",
  "[e2e][gateway][shutdown]") {
  server_process srv;
  {
    http_client setup{srv.host(), srv.port()};
    nlohmann::json body{{"sku", unique("gw-sku")},
                        {"name", "Slow"},
                        {"price_cents", 100},
                        {"currency", "EUR"},
                        {"stock", 1}};
    REQUIRE(
      setup.request("POST", "/products", body.dump(), {{"Authorization", admin_bearer()}}).status
      == 201);
  }

  // Naturally slow requests: listing products waits while this test holds a lock on the table.
  auto lock_conn = std::make_unique<pqxx::connection>(pg_url());
  auto lock_tx = std::make_unique<pqxx::work>(*lock_conn);
  lock_tx->exec("LOCK TABLE products IN ACCESS EXCLUSIVE MODE");

  const int connections = 6;
  std::vector<std::unique_ptr<http_client>> clients;
  std::vector<int> expected;
  for (int i = 0; i < connections; ++i) {
    clients.push_back(std::make_unique<http_client>(srv.host(), srv.port(), milliseconds(20'000)));
    // The first connection pipelines two requests; the others send one each.
    int n = i == 0 ? 2 : 1;
    std::string wire;
    for (int k = 0; k < n; ++k)
      wire += "GET /products?limit=" + std::to_string(k + 1)
              + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    clients.back()->send_raw(wire);
    expected.push_back(n);
  }
  const int total = connections + 1;

  // Wait until the server has read all of them (they show as in flight), so that SIGTERM
  // finds them accepted.
  auto deadline = steady::now() + std::chrono::seconds(10);
  double in_flight = 0;
  while (steady::now() < deadline) {
    in_flight = metric_value(scrape(srv), "emporium_http_requests_in_flight").value_or(0);
    if (in_flight >= total + 1) // the scrape counts itself
      break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  REQUIRE(in_flight >= total + 1);

  auto t0 = steady::now();
  srv.send_signal(SIGTERM);
  // New connections are refused while the slow requests are still in flight.
  bool refused = false;
  while (!refused && ms_since(t0) < 5000) {
    refused = !can_connect(srv.host(), srv.port(), milliseconds(500));
    if (!refused)
      std::this_thread::sleep_for(milliseconds(20));
  }
  CHECK(refused);
  CHECK(srv.running());

  // Let the database go: every accepted request completes with its real answer.
  std::this_thread::sleep_for(milliseconds(300));
  lock_tx->commit();
  lock_tx.reset();
  lock_conn.reset();

  int answered = 0;
  for (int i = 0; i < connections; ++i) {
    for (int k = 0; k < expected[static_cast<std::size_t>(i)]; ++k) {
      http_response r;
      try {
        r = clients[static_cast<std::size_t>(i)]->read_response();
      } catch (const std::exception& e) {
        FAIL("connection " << i << " request " << k << " got no answer: " << e.what());
      }
      INFO("connection " << i << " request " << k << ": " << r.status << " "
                         << r.body.substr(0, 200));
      CHECK(r.status == 200);
      CHECK(r.json()["items"].is_array());
      CHECK(r.json()["items"].size() == static_cast<std::size_t>(k + 1));
      ++answered;
    }
    // Then the server closes the connection: its last answer said so.
    CHECK(
      clients[static_cast<std::size_t>(i)]->read_raw_until_close_or(milliseconds(5000)).empty());
    CHECK(clients[static_cast<std::size_t>(i)]->peer_closed());
  }
  CHECK(answered == total);

  int status = srv.wait_exit(milliseconds(20'000));
  INFO("exit after " << ms_since(t0) << " ms; log:\n" << srv.log_tail(2000));
  REQUIRE(status != -1);
  CHECK(status == 0);
  bool cut = false;
  for (const auto& line : json_log_lines(srv))
    if (line.value("msg", "").find("drain timeout") != std::string::npos)
      cut = true;
  CHECK_FALSE(cut);
}
