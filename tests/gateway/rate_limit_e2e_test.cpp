// End-to-end: the token-bucket rate limiter of the real server. Each test has a server of its own
// with small buckets; tests that share a Redis use a customer or a forwarded address of their own,
// so their buckets never meet. Reads are counted on GET /products, not the health probes, which are
// never limited.

#include "core/ids.hpp"
#include "gateway/gateway_support.hpp"
#include "support/eventually.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

double seconds_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

/// A cheap read that is not a health probe.
const char* const read_target = "/products?limit=1";

int int_header(const http_response& r, const char* name) {
  auto v = r.header(name);
  INFO(name << ": '" << v << "'");
  REQUIRE_FALSE(v.empty());
  return std::stoi(v);
}

void check_429(const http_response& r, int max_retry_after) {
  INFO("answer: " << r.status << " " << r.body);
  REQUIRE(r.status == 429);
  CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
  auto retry = int_header(r, "Retry-After");
  CHECK(retry >= 1);
  CHECK(retry <= max_retry_after);
  CHECK(int_header(r, "RateLimit-Remaining") == 0);
  auto j = r.json();
  CHECK(j["status"] == 429);
  CHECK(j["instance"] == r.header("X-Request-Id"));
}

} // namespace

TEST_CASE(
  "gateway: a burst above capacity gets exactly capacity successes, then 429 with a sane "
  "Retry-After, and each route class has its own bucket",
  "[e2e][gateway][rate]") {
  // Reads: 5 at once, then one every 10 s. Writes: 4. Logins: 3, then one every 20 s.
  server_process srv{{{"EMPORIUM_RATE_CAPACITY", "4"},
                      {"EMPORIUM_RATE_REFILL", "0.1"},
                      {"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "5"},
                      {"EMPORIUM_RATE_LIMIT_LOGIN_CAPACITY", "3"},
                      {"EMPORIUM_RATE_LIMIT_LOGIN_REFILL_PER_S", "0.05"}}};
  http_client c{srv.host(), srv.port()};

  SECTION("reads, by customer") {
    auto token = new_customer(c).tokens.at(0);
    std::vector<int> statuses;
    for (int i = 0; i < 12; ++i) {
      auto r = c.get(read_target, bearer(token));
      statuses.push_back(r.status);
      CHECK(int_header(r, "RateLimit-Limit") == 5);
      if (i < 5) {
        CHECK(r.status == 200);
        CHECK(int_header(r, "RateLimit-Remaining") == 4 - i);
        auto reset = int_header(r, "RateLimit-Reset");
        CHECK(reset >= 1);
        CHECK(reset <= 50); // five tokens at 0.1 a second
      } else {
        check_429(r, 10); // one token takes 10 s
      }
    }
    CHECK(std::count(statuses.begin(), statuses.end(), 200) == 5);
    // Another customer is another client; the address's own bucket is untouched as well.
    CHECK(c.get(read_target, bearer(new_customer(c).tokens.at(0))).status == 200);
    CHECK(c.get(read_target).status == 200);
  }

  SECTION("made-up tokens and signed tokens without a session share their address's bucket") {
    // The harness's start-up probes drew nothing: probes are never limited.
    auto first = c.get(read_target);
    REQUIRE(first.status == 200);
    auto left = int_header(first, "RateLimit-Remaining");
    CHECK(left == 4);
    int admitted = 0;
    for (int i = 0; i < 8; ++i) {
      auto r = c.get(read_target, bearer(i % 2 == 0 ? unsigned_token() : fresh_token()));
      REQUIRE((r.status == 200 || r.status == 429));
      admitted += r.status == 200;
    }
    CHECK(admitted == left);
    check_429(c.get(read_target), 10); // the same bucket: the address's
    // Also on routes that look the token up: no fresh bucket, and so no lookup, per guess.
    int looked_up = 0;
    for (int i = 0; i < 3; ++i) {
      auto r = c.request("POST", "/carts", "", bearer(unsigned_token()));
      looked_up += r.status == 401;
    }
    CHECK(looked_up == 3); // writes: the address's write bucket (4) still has room
    // A live session has a bucket of its own: its customer's.
    CHECK(c.get(read_target, bearer(new_customer(c).tokens.at(0))).status == 200);
  }

  SECTION("writes and logins, by address, each in its own bucket") {
    // Unauthenticated writes are refused by the handler (401) but count all the same.
    int not_limited = 0;
    for (int i = 0; i < 7; ++i) {
      auto r = c.request("POST", "/products", "{}");
      CHECK(int_header(r, "RateLimit-Limit") == 4);
      if (r.status != 429) {
        CHECK(r.status == 401);
        ++not_limited;
      } else {
        check_429(r, 10);
      }
    }
    CHECK(not_limited == 4);
    // Logins: much stricter, and a made-up bearer token does not buy a fresh bucket.
    int login_not_limited = 0;
    for (int i = 0; i < 6; ++i) {
      auto r = c.request("POST", "/sessions", "{}", bearer(fresh_token()));
      CHECK(int_header(r, "RateLimit-Limit") == 3);
      if (r.status != 429) {
        CHECK(r.status == 400);
        ++login_not_limited;
      } else {
        check_429(r, 20);
      }
    }
    CHECK(login_not_limited == 3);
    // Reads from the same address still have their own bucket.
    auto r = c.get(read_target);
    CHECK(r.status == 200);
    CHECK(int_header(r, "RateLimit-Limit") == 5);
  }
}

TEST_CASE("gateway: tokens refill at the configured rate", "[e2e][gateway][rate]") {
  const double rate = 2.0;
  const int capacity = 10;
  server_process srv{{{"EMPORIUM_RATE_LIMIT_READ_CAPACITY", std::to_string(capacity)},
                      {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "2"}}};
  http_client c{srv.host(), srv.port()};
  auto token = new_customer(c).tokens.at(0);

  // Empty the bucket; the first refusal marks the moment it was empty.
  steady::time_point empty_sent{}, empty_answered{};
  for (int i = 0; i < capacity + 5; ++i) {
    auto sent = steady::now();
    auto r = c.get(read_target, bearer(token));
    if (r.status == 429) {
      empty_sent = sent;
      empty_answered = steady::now();
      CHECK(int_header(r, "Retry-After") == 1); // half a second, rounded up
      break;
    }
  }
  REQUIRE(empty_answered != steady::time_point{});

  std::this_thread::sleep_for(milliseconds(1600));

  // Count the admissions until the next refusal. The server saw the refusal somewhere in
  // [empty_sent, empty_answered] with less than one token left, and each later request somewhere
  // between its send and its answer: that bounds the tokens that can have come back.
  int admitted = 0;
  steady::time_point first_sent{}, last_answered{};
  for (int i = 0; i < capacity + 2; ++i) {
    auto sent = steady::now();
    if (i == 0)
      first_sent = sent;
    auto r = c.get(read_target, bearer(token));
    last_answered = steady::now();
    if (r.status != 200) {
      REQUIRE(r.status == 429);
      break;
    }
    ++admitted;
  }
  auto at_least = std::min<double>(capacity,
                                   std::floor(rate * seconds_between(empty_answered, first_sent)));
  auto at_most = std::min<double>(
    capacity, std::floor(1 + rate * seconds_between(empty_sent, last_answered)));
  INFO("admitted " << admitted << " after the pause; expected " << at_least << ".." << at_most);
  CHECK(admitted >= at_least);
  CHECK(admitted <= at_most);
  CHECK(admitted >= 3); // 1.6 s at 2 a second
}

TEST_CASE("gateway: two server processes sharing Redis together admit one quota, not two",
          "[e2e][gateway][rate][redis]") {
  // A Redis of its own: buckets outlive the servers there (until they would be full again),
  // and the start-up probes of both servers, by address, draw from one bucket as well.
  redis_process redis;
  const env_map env{{"EMPORIUM_RATE_LIMIT_MODE", "redis"},
                    {"EMPORIUM_REDIS_URL", redis.url()},
                    {"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "10"},
                    {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "0.01"},
                    // Generous: this test is about sharing, not about Redis being fast.
                    {"EMPORIUM_RATE_LIMIT_REDIS_TIMEOUT_MS", "2000"}};
  server_process a{env};
  server_process b{env};
  http_client ca{a.host(), a.port()};
  http_client cb{b.host(), b.port()};
  // One customer, verified by each server on its own: one bucket, keyed by the customer.
  auto token = new_customer(ca).tokens.at(0);

  int admitted_a = 0, admitted_b = 0, refused = 0;
  for (int i = 0; i < 24; ++i) {
    auto& c = i % 2 == 0 ? ca : cb;
    auto r = c.get(read_target, bearer(token));
    INFO("request " << i << " to " << (i % 2 == 0 ? "a" : "b") << ": " << r.status);
    REQUIRE((r.status == 200 || r.status == 429));
    if (r.status == 200) {
      (i % 2 == 0 ? admitted_a : admitted_b)++;
      // One bucket: the count goes down across both servers.
      CHECK(int_header(r, "RateLimit-Remaining") == 10 - (admitted_a + admitted_b));
    } else {
      ++refused;
      check_429(r, 100);
    }
  }
  CHECK(admitted_a + admitted_b == 10);
  CHECK(admitted_a == 5);
  CHECK(admitted_b == 5);
  CHECK(refused == 14);
  for (auto* srv : {&a, &b}) {
    auto m = scrape(*srv);
    CHECK(metric_value(m, "emporium_rate_limit_redis_up") == 1.0);
    CHECK(metric_value(m, "emporium_rate_limit_redis_fallbacks_total") == 0.0);
    CHECK(metric_value(m, "emporium_rate_limit_rejections_total{class=\"read\"}") == 7.0);
  }
}

TEST_CASE(
  "gateway: with Redis stopped, limiting goes on locally and requests still succeed, "
  "and once it is back, buckets are shared again",
  "[e2e][gateway][rate][redis]") {
  redis_process redis;
  // Each client is a forwarded address of its own (the test's connections come from a trusted
  // proxy, 127.0.0.1): a fresh bucket costs nothing, and works while Redis is down.
  server_process srv{{{"EMPORIUM_RATE_LIMIT_MODE", "redis"},
                      {"EMPORIUM_REDIS_URL", redis.url()},
                      {"EMPORIUM_HTTP_TRUSTED_PROXIES", "127.0.0.1"},
                      {"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "5"},
                      {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "0.01"}}};
  http_client c{srv.host(), srv.port()};
  auto key_of = [](const std::string& address) { return "emporium:rl:read:a:" + address; };
  auto from = [](const std::string& address) { return header_map{{"X-Forwarded-For", address}}; };

  // Shared through Redis: the bucket is there.
  auto before = fresh_address();
  for (int i = 0; i < 3; ++i) {
    auto r = c.get(read_target, from(before));
    REQUIRE(r.status == 200);
    CHECK(int_header(r, "RateLimit-Remaining") == 4 - i);
  }
  CHECK(redis.exists(key_of(before)));
  CHECK(metric_value(scrape(srv), "emporium_rate_limit_redis_up") == 1.0);

  redis.kill();

  // Every request is answered, none fails; the bucket is now local and still limits.
  auto during = fresh_address();
  std::vector<int> statuses;
  for (int i = 0; i < 12; ++i) {
    auto r = c.get(read_target, from(during));
    statuses.push_back(r.status);
    INFO("request " << i << " while Redis is down: " << r.status << " " << r.body);
    REQUIRE((r.status == 200 || r.status == 429));
    CHECK(int_header(r, "RateLimit-Limit") == 5);
  }
  CHECK(std::count(statuses.begin(), statuses.end(), 200) == 5);
  CHECK(std::count(statuses.begin(), statuses.end(), 429) == 7);
  // Other clients keep working too (the products come from PostgreSQL).
  CHECK(c.get(read_target, from(fresh_address())).status == 200);

  auto m = scrape(srv);
  CHECK(metric_value(m, "emporium_rate_limit_redis_up") == 0.0);
  auto fallbacks = metric_value(m, "emporium_rate_limit_redis_fallbacks_total");
  REQUIRE(fallbacks);
  CHECK(*fallbacks >= 13);

  // One warning for the whole outage, not one per request.
  auto count_lines = [&srv](const std::string& needle) {
    int n = 0;
    for (const auto& line : json_log_lines(srv))
      if (line.value("msg", "").find(needle) != std::string::npos)
        ++n;
    return n;
  };
  CHECK(count_lines("rate limiter: Redis at") == 1);
  // The access log is written by a thread of its own, in batches: the lines of the last
  // requests may still be on their way to the file.
  int fallback_lines = 0;
  emporium::test::eventually(
    [&] {
      fallback_lines = 0;
      for (const auto& line : json_log_lines(srv))
        if (line.value("logger", "") == "access" && line.value("rate_limit_fallback", false))
          ++fallback_lines;
      return fallback_lines >= 13;
    },
    std::chrono::seconds(5), std::chrono::milliseconds(50));
  CHECK(fallback_lines >= 13);

  // Redis comes back: within a few seconds the buckets live there again.
  redis.start();
  auto deadline = steady::now() + std::chrono::seconds(15);
  bool shared_again = false;
  while (steady::now() < deadline && !shared_again) {
    auto after = fresh_address(); // a full bucket each time: every probe is admitted
    REQUIRE(c.get(read_target, from(after)).status == 200);
    shared_again = redis.exists(key_of(after));
    if (!shared_again)
      std::this_thread::sleep_for(milliseconds(200));
  }
  CHECK(shared_again);
  CHECK(metric_value(scrape(srv), "emporium_rate_limit_redis_up") == 1.0);
  CHECK(count_lines("rate limiter: sharing buckets through Redis") == 2); // at start, and again
  CHECK(count_lines("rate limiter: Redis at") == 1);
}
