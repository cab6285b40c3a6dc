// End-to-end: who the rate limiter thinks a client is. Health probes are never limited; a
// customer is one client however many sessions they hold; X-Forwarded-For counts only from a
// trusted proxy, IPv6 per /64; signing up has a strict class of its own, by address.

#include "gateway/gateway_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace {

using namespace emporium::test;

const char* const read_target = "/products?limit=1";

int int_header(const http_response& r, const char* name) {
  auto v = r.header(name);
  INFO(name << ": '" << v << "'");
  REQUIRE_FALSE(v.empty());
  return std::stoi(v);
}

header_map from(const std::string& forwarded_for, header_map h = {}) {
  h["X-Forwarded-For"] = forwarded_for;
  return h;
}

/// GETs `target` until it is refused (at most `limit` times); the number admitted.
int drain(http_client& c, const std::string& target, const header_map& h, int limit = 50) {
  for (int i = 0; i < limit; ++i) {
    auto r = c.get(target, h);
    INFO(target << " -> " << r.status << " " << r.body);
    REQUIRE((r.status == 200 || r.status == 429));
    if (r.status == 429)
      return i;
  }
  FAIL("never refused after " << limit << " requests");
  return limit;
}

} // namespace

TEST_CASE(
  "gateway: health probes answer 200 while the address's bucket is empty, and never "
  "draw from it",
  "[e2e][gateway][rate][probes]") {
  server_process srv{{{"EMPORIUM_RATE_CAPACITY", "3"},
                      {"EMPORIUM_RATE_REFILL", "0.01"},
                      {"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "3"}}};
  http_client c{srv.host(), srv.port()};

  // Many probes first: the bucket is still full after them.
  for (int i = 0; i < 30; ++i)
    REQUIRE(c.get("/healthz").status == 200);
  auto first = c.get(read_target);
  REQUIRE(first.status == 200);
  CHECK(int_header(first, "RateLimit-Remaining") == 2);

  // Empty it; the probes still answer, each of them, as often as the balancer asks.
  CHECK(drain(c, read_target, {}) == 2);
  for (int i = 0; i < 20; ++i) {
    for (const char* probe : {"/healthz", "/readyz", "/metrics"}) {
      auto r = c.get(probe);
      INFO(probe << " -> " << r.status << " " << r.body.substr(0, 200));
      REQUIRE(r.status == 200);
      CHECK_FALSE(r.has_header("RateLimit-Limit"));
      CHECK_FALSE(r.has_header("Retry-After"));
    }
    auto head = c.request("HEAD", "/healthz");
    REQUIRE(head.status == 200);
  }
  // With a token too (a monitoring agent holding the admin key or any other).
  CHECK(c.get("/metrics", {{"Authorization", admin_bearer()}}).status == 200);
  CHECK(c.get("/healthz", bearer(fresh_token())).status == 200);
  // Everything else from the address is still refused: the probes did not refill it either.
  CHECK(c.get(read_target).status == 429);
  auto m = scrape(srv);
  CHECK(metric_value(m, "emporium_rate_limit_rejections_total{class=\"read\"}") == 2.0);
}

TEST_CASE("gateway: one customer with several sessions shares one bucket", "[e2e][gateway][rate]") {
  server_process srv{{{"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "6"},
                      {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "0.01"}}};
  http_client c{srv.host(), srv.port()};
  auto ann = new_customer(c, 3);
  REQUIRE(ann.tokens.size() == 3);
  CHECK(ann.tokens[0] != ann.tokens[1]);

  // Round robin over the three sessions: six admitted in all, not six each.
  int admitted = 0;
  std::vector<int> statuses;
  for (int i = 0; i < 18; ++i) {
    const auto& token = ann.tokens[static_cast<std::size_t>(i % 3)];
    auto r = c.get("/customers/" + ann.id, bearer(token));
    statuses.push_back(r.status);
    INFO("request " << i << ": " << r.status << " " << r.body);
    REQUIRE((r.status == 200 || r.status == 429));
    CHECK(int_header(r, "RateLimit-Limit") == 6);
    if (r.status == 200) {
      ++admitted;
      CHECK(int_header(r, "RateLimit-Remaining") == 6 - admitted);
    }
  }
  CHECK(admitted == 6);
  // A fourth session, opened now, is the same customer: refused at once.
  auto more = c.request("POST", "/sessions",
                        nlohmann::json{{"email", ann.email}, {"password", ann.password}}.dump());
  REQUIRE(more.status == 200);
  CHECK(c.get(read_target, bearer(more.json()["token"].get<std::string>())).status == 429);

  // Another customer, and the address itself, are other clients with full buckets.
  auto bob = new_customer(c);
  auto r = c.get(read_target, bearer(bob.tokens.at(0)));
  CHECK(r.status == 200);
  CHECK(int_header(r, "RateLimit-Remaining") == 5);
  r = c.get(read_target);
  CHECK(r.status == 200);
  CHECK(int_header(r, "RateLimit-Remaining") == 5);

  // The access log names the customer, never a token.
  srv.stop_term();
  int as_customer = 0;
  for (const auto& line : json_log_lines(srv))
    if (line.value("logger", "") == "access" && line.value("client", "") == "customer:" + ann.id)
      ++as_customer;
  CHECK(as_customer >= 18);
}

TEST_CASE(
  "gateway: a signed token whose session is dead is looked up once, not once per "
  "request, and is charged to its address",
  "[e2e][gateway][rate]") {
  server_process srv{{{"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "5"},
                      {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "0.01"}}};
  http_client c{srv.host(), srv.port()};
  // Each verification that reaches the runtime's workers misses the session cache in Redis
  // (no such session): the misses count the lookups. /openapi.json itself touches no cache.
  auto misses = [&] {
    return metric_value(scrape(srv), "emporium_cache_misses_total").value_or(-1);
  };
  auto dead = fresh_token();
  auto before = misses();
  int admitted = 0;
  for (int i = 0; i < 20; ++i) {
    auto r = c.get("/openapi.json", bearer(dead));
    REQUIRE((r.status == 200 || r.status == 429));
    admitted += r.status == 200;
  }
  CHECK(admitted == 5);                        // the address's bucket
  CHECK(c.get("/openapi.json").status == 429); // the same one
  auto lookups = misses() - before;
  INFO("session lookups for 20 requests: " << lookups);
  CHECK(lookups >= 1);
  CHECK(lookups <= 2);
}

TEST_CASE("gateway: X-Forwarded-For is honoured only from a trusted proxy, IPv6 per /64",
          "[e2e][gateway][rate][xff]") {
  const env_map small{{"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "3"},
                      {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "0.01"}};

  SECTION("from a trusted proxy: the right-most untrusted entry") {
    auto env = small;
    env["EMPORIUM_HTTP_TRUSTED_PROXIES"] = "127.0.0.1, 10.0.0.0/8";
    server_process srv{env};
    http_client c{srv.host(), srv.port()};
    auto a = fresh_address();
    CHECK(drain(c, read_target, from(a)) == 3);
    // The client may prepend whatever it likes; the proxy's entry decides.
    CHECK(c.get(read_target, from("203.0.113.9, " + a)).status == 429);
    CHECK(c.get(read_target, from(fresh_address() + ", " + a)).status == 429);
    // A trusted hop on the right is walked over.
    CHECK(c.get(read_target, from(a + ", 10.1.2.3")).status == 429);
    // Another client behind the same proxy has its own bucket, and so has the proxy.
    auto b = fresh_address();
    auto r = c.get(read_target, from(b));
    CHECK(r.status == 200);
    CHECK(int_header(r, "RateLimit-Remaining") == 2);
    CHECK(c.get(read_target).status == 200);
    // Garbage buys nothing new: it is the proxy's own address.
    CHECK(drain(c, read_target, from("unknown")) == 2);
    CHECK(c.get(read_target, from("not-an-address")).status == 429);
    CHECK(c.get(read_target).status == 429);

    // IPv6 clients: one bucket per /64.
    CHECK(drain(c, read_target, from("2001:db8:7:1::1")) == 3);
    CHECK(c.get(read_target, from("2001:db8:7:1:ffff:ffff:ffff:fffe")).status == 429);
    CHECK(c.get(read_target, from("[2001:db8:7:1::99]:4711")).status == 429);
    CHECK(c.get(read_target, from("2001:db8:7:2::1")).status == 200);

    // The access log shows the client's address.
    srv.stop_term();
    int shown = 0;
    for (const auto& line : json_log_lines(srv))
      if (line.value("logger", "") == "access" && line.value("client", "") == b)
        ++shown;
    CHECK(shown == 1);
  }

  SECTION("from anyone else: ignored") {
    auto env = small;
    env["EMPORIUM_HTTP_TRUSTED_PROXIES"] = "10.0.0.0/8"; // not the test's 127.0.0.1
    server_process srv{env};
    http_client c{srv.host(), srv.port()};
    int admitted = 0;
    for (int i = 0; i < 6; ++i)
      admitted += c.get(read_target, from(fresh_address())).status == 200;
    CHECK(admitted == 3); // one bucket: 127.0.0.1's
    CHECK(c.get(read_target).status == 429);
  }

  SECTION("by default: ignored") {
    server_process srv{small};
    http_client c{srv.host(), srv.port()};
    int admitted = 0;
    for (int i = 0; i < 6; ++i)
      admitted += c.get(read_target, from(fresh_address())).status == 200;
    CHECK(admitted == 3);
  }
}

TEST_CASE("gateway: signing up has a strict class of its own, by address",
          "[e2e][gateway][rate][signup]") {
  // Writes stay generous (the harness's default); sign-ups: two, then one every 100 s.
  server_process srv{{{"EMPORIUM_RATE_LIMIT_SIGNUP_CAPACITY", "2"},
                      {"EMPORIUM_RATE_LIMIT_SIGNUP_REFILL_PER_S", "0.01"},
                      {"EMPORIUM_HTTP_TRUSTED_PROXIES", "127.0.0.1"}}};
  http_client c{srv.host(), srv.port()};
  auto sign_up = [&](const header_map& h) {
    auto body = nlohmann::json{{"email", unique("signup") + "@example.com"},
                               {"name", "Flood"},
                               {"password", "correct horse battery"}};
    return c.request("POST", "/customers", body.dump(), h);
  };
  auto flood = fresh_address();
  std::vector<int> statuses;
  for (int i = 0; i < 5; ++i) {
    auto r = sign_up(from(flood));
    statuses.push_back(r.status);
    INFO("sign-up " << i << ": " << r.status << " " << r.body);
    CHECK(int_header(r, "RateLimit-Limit") == 2);
    if (i < 2) {
      CHECK(r.status == 201);
    } else {
      REQUIRE(r.status == 429);
      CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
      auto retry = int_header(r, "Retry-After");
      CHECK(retry >= 1);
      CHECK(retry <= 100);
    }
  }
  // A bearer token buys no bucket of its own here, not even the admin key.
  auto other = fresh_address();
  REQUIRE(sign_up(from(other)).status == 201);
  auto login = c.request("POST", "/sessions",
                         nlohmann::json{{"email", "nobody@example.com"}, {"password", "x"}}.dump());
  CHECK(login.status == 401); // logins have their own class: not refused by sign-ups
  CHECK(sign_up(from(flood, {{"Authorization", admin_bearer()}})).status == 429);
  // Another address signs up; other writes from the flooding address are not affected.
  CHECK(sign_up(from(fresh_address())).status == 201);
  auto cart = c.request("POST", "/carts", "", from(flood));
  CHECK(cart.status == 401);
  CHECK(int_header(cart, "RateLimit-Limit") == 1'000'000);
  auto m = scrape(srv);
  CHECK(metric_value(m, "emporium_rate_limit_rejections_total{class=\"signup\"}") == 4.0);
}
