// End-to-end: a session ends at auth.session_ttl_s, whether the server finds it in its own
// memory, in Redis or in PostgreSQL; the expiry cached in Redis beside the customer is honoured;
// a value in Redis under a session's key that does not parse, or names another generation of
// session copies than the current one, is never trusted.

#include "behaviour/behaviour_support.hpp"
#include "e2e/commerce_support.hpp"
#include "gateway/gateway_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using namespace std::chrono_literals;

http_response whoami(http_client& c, const customer_sessions& who, const std::string& token) {
  return c.get("/customers/" + who.id, bearer(token));
}

void check_401(const http_response& r) {
  INFO(show(r));
  REQUIRE(r.status == 401);
  CHECK(r.header("content-type").find("application/problem+json") == 0);
  CHECK(r.json().at("status") == 401);
}

} // namespace

TEST_CASE(
  "session: a token works until auth.session_ttl_s and gets 401 after, from the server's "
  "memory, from Redis and from PostgreSQL",
  "[e2e][session]") {
  const int ttl_s = 5;
  server_process srv{{{"EMPORIUM_AUTH_SESSION_TTL_S", std::to_string(ttl_s)}}};
  http_client c{srv.host(), srv.port()};
  redis_client redis{redis_url()};
  auto logged_in_at = epoch_ms();
  // Four sessions: the last one (the newest) used at once, three kept unseen by this server
  // until they expired.
  auto who = new_customer(c, 4);
  const auto& used = who.tokens[3];

  auto first = whoami(c, who, used);
  INFO(show(first));
  REQUIRE(first.status == 200);
  CHECK(first.json().at("id") == who.id);
  // The lookup cached the session in Redis: the customer, its expiry within the TTL, and the
  // generation of session copies it belongs to.
  auto cached = redis.get(session_cache_key(used));
  auto generation = redis.get("emporium:session:generation");
  INFO("cached: " << cached << ", generation " << generation);
  REQUIRE(cached.rfind(who.id + "|", 0) == 0);
  REQUIRE(generation != "(nil)");
  CHECK(cached.substr(cached.rfind('|') + 1) == generation);
  CHECK(std::stoll(redis.command({"TTL", session_cache_key(used)})) <= 120); // two minutes at most
  auto cached_expiry = std::stoll(cached.substr(cached.find('|') + 1));
  CHECK(cached_expiry > logged_in_at);
  CHECK(cached_expiry <= epoch_ms() + ttl_s * 1000);

  // Past the expiry (plus a margin for the clocks of server and database).
  std::this_thread::sleep_until(std::chrono::system_clock::time_point{}
                                + std::chrono::milliseconds(cached_expiry) + 1500ms);

  // The token the server holds in memory: expired there too.
  check_401(whoami(c, who, used));
  // A token it never saw, nothing in Redis: PostgreSQL says expired.
  REQUIRE(redis.get(session_cache_key(who.tokens[1])) == "(nil)");
  check_401(whoami(c, who, who.tokens[1]));

  // Redis is believed up to the expiry cached there, and not one moment beyond it.
  redis.set(session_cache_key(who.tokens[2]),
            who.id + "|" + std::to_string(epoch_ms() - 1000) + "|" + generation);
  check_401(whoami(c, who, who.tokens[2]));
  redis.set(session_cache_key(who.tokens[0]),
            who.id + "|" + std::to_string(epoch_ms() + 60'000) + "|" + generation);
  auto trusted = whoami(c, who, who.tokens[0]);
  INFO(show(trusted));
  CHECK(trusted.status == 200);
}

TEST_CASE(
  "session: a value in Redis under a session's key that does not parse is not trusted: "
  "a valid token authenticates from PostgreSQL, an unknown one does not",
  "[e2e][session]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  redis_client redis{redis_url()};
  auto who = new_customer(c);
  const std::vector<std::string> garbage{"garbage",
                                         "cust_forged|not-a-number",
                                         "cust_forged|",
                                         "|",
                                         "cust_forged|99999999999999999999999999",
                                         "cust_forged|12x",
                                         "",
                                         "|4102444800000", // no customer, expiring in 2100
                                         "cust_forged|4102444800000",
                                         "cust_forged|4102444800000|",
                                         "cust_forged|4102444800000|another-generation"};
  for (const auto& value : garbage) {
    DYNAMIC_SECTION("cached value '" << value << "'") {
      // A session of its own, never seen by the server, so that its first lookup reads Redis.
      auto credentials = nlohmann::json{{"email", who.email}, {"password", who.password}};
      auto login = c.request("POST", "/sessions", credentials.dump());
      INFO(show(login));
      REQUIRE(login.status == 200);
      auto token = login.json().at("token").get<std::string>();
      redis.set(session_cache_key(token), value);
      auto r = whoami(c, who, token);
      INFO(show(r));
      CHECK(r.status == 200);
      // The lookup put the real session over the garbage.
      CHECK(redis.get(session_cache_key(token)).rfind(who.id + "|", 0) == 0);

      // A token the server never issued, under a key holding the same garbage.
      auto unknown = fresh_token();
      redis.set(session_cache_key(unknown), value);
      check_401(c.get("/customers/" + who.id, bearer(unknown)));
    }
  }
}
