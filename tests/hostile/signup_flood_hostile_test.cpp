// Hostile: a sign-up flood from one machine. Sign-up hashes the password (Argon2id, 64 MiB):
// 32 concurrent sign-ups queued without bound on the workers that hash logins would make a
// login from anyone wait seconds behind them. Sign-ups and logins hash on workers of
// their own, the sign-up queue is bounded (503 with Retry-After beyond it, never a wait past
// the deadline), and a known email is refused before any hashing.

#include "faults/fault_support.hpp"
#include "hostile/hostile_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <sstream>
#include <thread>

namespace {

using namespace emporium::faults;
using namespace emporium::hostile;
using emporium::test::http_client;
using emporium::test::http_response;
using emporium::test::server_process;
using namespace std::chrono_literals;

/// The flood must reach the hashing workers: the rate limiter's sign-up class (strict per
/// address) would otherwise turn most of it away with 429 before it costs anything, which is
/// the first line of defence but not what this test is about.
emporium::test::env_map flood_env() {
  return fault_env({{"EMPORIUM_RATE_LIMIT_WRITE_CAPACITY", "1000000"},
                    {"EMPORIUM_RATE_LIMIT_WRITE_REFILL_PER_S", "1000000"},
                    {"EMPORIUM_RATE_LIMIT_SIGNUP_CAPACITY", "1000000"},
                    {"EMPORIUM_RATE_LIMIT_SIGNUP_REFILL_PER_S", "1000000"}});
}

json signup(const std::string& email, const std::string& password) {
  return json{{"email", email}, {"name", "Flood"}, {"password", password}};
}

} // namespace

TEST_CASE(
  "32 concurrent sign-ups: logins keep answering, sign-ups answer 201 or 503 with "
  "Retry-After and none waits past its deadline",
  "[hostile][auth]") {
  services svc;
  service_guard guard{svc};
  server_process srv{flood_env()};
  http_client c{srv.host(), srv.port(), 30s};
  auto email = emporium::test::unique("flood-login") + "@example.com";
  REQUIRE(c.request("POST", "/customers", signup(email, "a good password").dump()).status == 201);
  REQUIRE(
    c.request("POST", "/sessions", json{{"email", email}, {"password", "a good password"}}.dump())
      .status
    == 200);
  // Logins without the flood, for reference in the same run.
  std::vector<double> quiet_ms;
  for (int i = 0; i < 10; ++i) {
    auto sent = steady::now();
    auto r = c.request("POST", "/sessions",
                       json{{"email", email}, {"password", "a good password"}}.dump());
    quiet_ms.push_back(millis(sent, steady::now()));
    REQUIRE(r.status == 200);
  }
  auto rss_before = srv.rss_kib();
  auto log_before = log_lines(srv);

  std::atomic<bool> stop{false};
  std::mutex mtx;
  std::map<int, std::size_t> signups;
  std::size_t signup_503_without_retry_after = 0;
  std::vector<std::string> transport_errors;
  std::vector<std::thread> flood;
  for (int t = 0; t < 32; ++t)
    flood.emplace_back([&, t] {
      http_client fc{srv.host(), srv.port(), 30s};
      for (int i = 0; !stop.load(); ++i) {
        try {
          auto r = fc.request("POST", "/customers",
                              signup(emporium::test::unique("flood") + "@example.com",
                                     "password-" + std::to_string(t) + "-" + std::to_string(i))
                                .dump());
          {
            std::lock_guard<std::mutex> g{mtx};
            ++signups[r.status];
            if (r.status == 503 && !r.has_header("retry-after"))
              ++signup_503_without_retry_after;
          }
          // Refused: a short pause, so that 32 sign-ups stay in flight without the test's own
          // client threads taking the CPU from the server they measure.
          if (r.status != 201)
            std::this_thread::sleep_for(100ms);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> g{mtx};
          ++signups[0];
          transport_errors.push_back(e.what());
          fc.close();
        }
      }
    });

  // Logins while the flood runs: one at a time, 40 of them.
  std::this_thread::sleep_for(500ms); // the flood is under way
  std::map<int, std::size_t> logins;
  std::vector<double> login_ms;
  long rss_peak = srv.rss_kib();
  for (int i = 0; i < 40; ++i) {
    auto sent = steady::now();
    auto r = c.request("POST", "/sessions",
                       json{{"email", email}, {"password", "a good password"}}.dump());
    login_ms.push_back(millis(sent, steady::now()));
    ++logins[r.status];
    rss_peak = std::max(rss_peak, srv.rss_kib());
    std::this_thread::sleep_for(100ms);
  }
  auto waiting = metric(scrape(srv), "emporium_auth_waiting");
  stop = true;
  for (auto& t : flood)
    t.join();

  INFO("sign-ups {" << format_statuses(signups) << "}, logins {" << format_statuses(logins) << "}");
  CHECK(logins[200] == 40); // every login answered, and answered yes
  CHECK(transport_errors.empty());
  CHECK(signup_503_without_retry_after == 0);
  for (const auto& [status, n] : signups)
    CHECK((status == 201 || status == 503)); // never 500, never 504, never no answer
  CHECK(signups[201] > 0);
  // The queue is bounded: auth.signup_queue_limit (8) plus what the login pool holds.
  CHECK(waiting <= 8 + 32);

  auto p50 = percentile(login_ms, 50);
  auto p99 = percentile(login_ms, 99);
  std::ostringstream figures;
  figures << "login p50 " << static_cast<long>(p50) << " ms, p99 " << static_cast<long>(p99)
          << " ms during the flood (without it: p50 " << static_cast<long>(percentile(quiet_ms, 50))
          << " ms, max " << static_cast<long>(percentile(quiet_ms, 100)) << ")"
          << " (logins {" << format_statuses(logins) << "}); server RSS " << rss_before / 1024
          << " MiB before, " << rss_peak / 1024 << " MiB at most during; "
          << (log_lines(srv) - log_before) << " log lines";
  report_hostile("sign-up flood", "32 concurrent sign-up loops while 40 logins ran", signups,
                 figures.str());
}

TEST_CASE("sign-ups with a known email are refused before any password is hashed",
          "[hostile][auth]") {
  services svc;
  service_guard guard{svc};
  server_process srv{flood_env()};
  http_client c{srv.host(), srv.port(), 30s};
  auto email = emporium::test::unique("dup") + "@example.com";
  REQUIRE(c.request("POST", "/customers", signup(email, "first password").dump()).status == 201);
  auto hashed_before = metric(scrape(srv), "emporium_signup_hashes_total");
  REQUIRE(hashed_before >= 1);
  for (int i = 0; i < 10; ++i) {
    auto r = c.request("POST", "/customers", signup(email, "another password").dump());
    CHECK(r.status == 409);
  }
  CHECK(metric(scrape(srv), "emporium_signup_hashes_total") == hashed_before);
}
