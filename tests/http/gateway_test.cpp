// The gateway's pure parts: request ids, problem instances, classes, identities, CORS, the
// access log's fields.

#include "http/gateway.hpp"
#include "core/ids.hpp"
#include "http/logging.hpp"
#include "http/problem.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <set>

using namespace emporium::http;
using json = nlohmann::json;

namespace {

request make_request(std::string method, std::string path, header_map headers = {}) {
  request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.target = r.path;
  r.headers = std::move(headers);
  r.remote = "192.0.2.7";
  return r;
}

std::string header_of(const response& res, const std::string& name) {
  std::string out;
  for (const auto& [k, v] : res.headers)
    if (k == name)
      out += (out.empty() ? "" : ", ") + v;
  return out;
}

} // namespace

TEST_CASE("request ids: 1..128 visible ASCII characters are accepted", "[gateway]") {
  CHECK(gateway::valid_request_id("a"));
  CHECK(gateway::valid_request_id("3f2c9a1e-8d5b-4c7e-9f0a-1b2c3d4e5f60"));
  CHECK(gateway::valid_request_id(std::string(128, 'x')));
  CHECK(gateway::valid_request_id("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));
  CHECK_FALSE(gateway::valid_request_id(""));
  CHECK_FALSE(gateway::valid_request_id(std::string(129, 'x')));
  CHECK_FALSE(gateway::valid_request_id("has space"));
  CHECK_FALSE(gateway::valid_request_id("tab\there"));
  CHECK_FALSE(gateway::valid_request_id("new\nline"));
  CHECK_FALSE(gateway::valid_request_id("del\x7f"));
  CHECK_FALSE(gateway::valid_request_id("caf\xc3\xa9"));
}

TEST_CASE("generated request ids are valid and distinct", "[gateway]") {
  std::set<std::string> seen;
  for (int i = 0; i < 10'000; ++i) {
    auto id = gateway::new_request_id();
    REQUIRE(gateway::valid_request_id(id));
    REQUIRE(id.size() == 28);
    REQUIRE(id.rfind("req_", 0) == 0);
    seen.insert(id);
  }
  CHECK(seen.size() == 10'000);
  // Used as they are as the problem's instance.
  auto id = gateway::new_request_id();
  CHECK(gateway::instance_of(id) == id);
}

TEST_CASE("problem+json bodies get the request id as instance, other bodies are untouched",
          "[gateway]") {
  auto res = problem(404, "no product has this id");
  gateway::add_problem_instance(res, "req-42");
  auto j = json::parse(res.body);
  CHECK(j["instance"] == "req-42");
  CHECK(j["status"] == 404);
  CHECK(j["detail"] == "no product has this id");

  // A client's id with characters a URI reference cannot hold is percent-encoded.
  auto odd = problem(400, "bad", {{"limit", "must be an integer"}});
  gateway::add_problem_instance(odd, "a\"b<c>{d}");
  j = json::parse(odd.body);
  CHECK(j["instance"] == "a%22b%3Cc%3E%7Bd%7D");
  CHECK(j["errors"][0]["field"] == "limit");

  response plain;
  plain.body = R"({"status":"ok"})";
  gateway::add_problem_instance(plain, "req-1");
  CHECK(plain.body == R"({"status":"ok"})");
}

TEST_CASE("route classes: reads, writes, the strict login and sign-up", "[gateway]") {
  CHECK(gateway::classify("GET", "/products") == route_class::read);
  CHECK(gateway::classify("HEAD", "/products/prod_1") == route_class::read);
  CHECK(gateway::classify("OPTIONS", "/orders") == route_class::read);
  CHECK(gateway::classify("POST", "/products") == route_class::write);
  CHECK(gateway::classify("PATCH", "/products/x") == route_class::write);
  CHECK(gateway::classify("DELETE", "/sessions") == route_class::write);
  CHECK(gateway::classify("POST", "/sessions") == route_class::login);
  CHECK(gateway::classify("POST", "/sessions/") == route_class::write);
  CHECK(gateway::classify("POST", "/customers") == route_class::signup);
  CHECK(gateway::classify("POST", "/customers/") == route_class::write);
  CHECK(gateway::classify("GET", "/customers") == route_class::read);
  CHECK(gateway::classify("PUT", "/customers") == route_class::write);
  CHECK(std::string{to_string(route_class::signup)} == "signup");
}

TEST_CASE("session tokens: signed, verified, and a changed byte anywhere is refused", "[gateway]") {
  auto key = gateway::token_key(emporium::core::sha256_hex("admin"));
  CHECK(key != gateway::token_key(emporium::core::sha256_hex("another admin")));
  const std::string token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  auto presented = gateway::sign_token(token, key);
  CHECK(presented.size() == token.size() + 1 + 32);
  auto back = gateway::signed_token(presented, key);
  REQUIRE(back);
  CHECK(*back == token);
  CHECK_FALSE(gateway::signed_token(presented, gateway::token_key("other")));
  CHECK_FALSE(gateway::signed_token(token, key)); // unsigned
  CHECK_FALSE(gateway::signed_token("", key));
  CHECK_FALSE(gateway::signed_token(presented.substr(token.size()), key)); // only '.' + mac
  CHECK_FALSE(gateway::signed_token(presented + "0", key));
  for (std::size_t i = 0; i < presented.size(); ++i) {
    auto changed = presented;
    changed[i] = changed[i] == '1' ? '2' : '1';
    INFO("byte " << i);
    CHECK_FALSE(gateway::signed_token(changed, key));
  }
}

TEST_CASE(
  "session tokens: one signed by an earlier build still verifies (the sessions table "
  "holds them)",
  "[gateway]") {
  // HMAC-SHA-256 computed outside this code base, truncated to 32 hex digits.
  auto key = gateway::token_key(emporium::core::sha256_hex("admin"));
  const std::string token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  const std::string issued = token + ".8c6a2930904537a8bd319296f089b91c";
  CHECK(gateway::sign_token(token, key) == issued);
  auto back = gateway::signed_token(issued, key);
  REQUIRE(back);
  CHECK(*back == token);
}

TEST_CASE(
  "identity: a token this server signed asks for its session to be verified, the admin "
  "key has its own bucket, any other token and no token are the address, logins and "
  "sign-ups by address",
  "[gateway]") {
  const auto admin_hash = emporium::core::sha256_hex("the-admin-key");
  const auto key = gateway::token_key(admin_hash);
  const std::string addr = "192.0.2.7";
  auto anon = gateway::identify(make_request("GET", "/products"), route_class::read, key,
                                admin_hash, addr);
  CHECK(anon.bucket == "a:192.0.2.7");
  CHECK(anon.shown == "192.0.2.7");
  CHECK(anon.session_token.empty());

  // The address given is the one used (resolved from X-Forwarded-For by the caller), not the peer.
  auto proxied = gateway::identify(make_request("GET", "/products"), route_class::read, key,
                                   admin_hash, "198.51.100.9");
  CHECK(proxied.bucket == "a:198.51.100.9");
  // IPv6 clients by their /64.
  auto v6 = gateway::identify(make_request("GET", "/products"), route_class::read, key, admin_hash,
                              "2001:db8:1:2:aaaa:bbbb:cccc:dddd");
  CHECK(v6.bucket == "a:2001:db8:1:2::/64");

  const std::string token = "super-secret-token-value";
  const auto presented = gateway::sign_token(token, key);
  auto req = make_request("GET", "/orders/x", {{"authorization", "Bearer " + presented}});
  auto who = gateway::identify(req, route_class::read, key, admin_hash, addr);
  auto hash = emporium::core::sha256_hex(token);
  // Until the session is verified, the address's bucket; the token is handed over for that.
  CHECK(who.bucket == "a:192.0.2.7");
  CHECK(who.session_token == token);
  CHECK(who.shown == "192.0.2.7 unverified-token:" + hash.substr(0, 12));
  for (const auto& secret : {token, presented}) {
    CHECK(who.bucket.find(secret) == std::string::npos);
    CHECK(who.shown.find(secret) == std::string::npos);
  }
  auto verified = gateway::customer_identity("cust_01ABC");
  CHECK(verified.bucket == "c:cust_01ABC");
  CHECK(verified.shown == "customer:cust_01ABC");

  auto admin = make_request("GET", "/orders/x", {{"authorization", "Bearer the-admin-key"}});
  auto a = gateway::identify(admin, route_class::write, key, admin_hash, addr);
  CHECK(a.bucket == "t:admin");
  CHECK(a.bucket.find(admin_hash) == std::string::npos); // a Redis key name: never the hash
  CHECK(a.session_token.empty());
  CHECK(a.shown == "admin");

  // Made-up tokens (or a real token's stored part without its signature) are the address and
  // are not looked up: a fresh one per request buys nothing. Their hash prefix shows in logs,
  // never the token.
  for (const auto& guess : std::vector<std::string>{"made-up-1", "made-up-2", token}) {
    auto r = make_request("GET", "/orders/x", {{"authorization", "Bearer " + guess}});
    auto g = gateway::identify(r, route_class::write, key, admin_hash, addr);
    CHECK(g.bucket == "a:192.0.2.7");
    CHECK(g.session_token.empty());
    CHECK(g.shown.find(guess) == std::string::npos);
  }

  // A login or a sign-up is by address, whatever token it carries.
  auto login = make_request("POST", "/sessions", {{"authorization", "Bearer " + presented}});
  auto l = gateway::identify(login, route_class::login, key, admin_hash, addr);
  CHECK(l.bucket == "a:192.0.2.7");
  CHECK(l.session_token.empty());
  auto signup = make_request("POST", "/customers", {{"authorization", "Bearer " + presented}});
  auto su = gateway::identify(signup, route_class::signup, key, admin_hash, addr);
  CHECK(su.bucket == "a:192.0.2.7");
  CHECK(su.session_token.empty());
  // Not a bearer token: the address.
  auto basic = make_request("GET", "/", {{"authorization", "Basic dXNlcjpwYXNz"}});
  CHECK(gateway::identify(basic, route_class::read, key, admin_hash, addr).bucket == "a:192.0.2.7");
}

TEST_CASE("CORS: none by default", "[gateway][cors]") {
  gateway::cors_policy none{{}};
  CHECK_FALSE(none.enabled());
  response res;
  none.decorate(res, "https://shop.example");
  CHECK(res.headers.empty());
  auto pre = make_request(
    "OPTIONS", "/products",
    {{"origin", "https://shop.example"}, {"access-control-request-method", "POST"}});
  auto answer = none.options_answer(pre, {"GET", "POST"});
  CHECK(answer.status == 204);
  CHECK(header_of(answer, "Allow") == "GET, POST, HEAD, OPTIONS");
  CHECK(header_of(answer, "Access-Control-Allow-Origin").empty());
  CHECK(header_of(answer, "Access-Control-Allow-Methods").empty());
}

TEST_CASE("CORS: allowed origins get the headers, others none, all Vary: Origin",
          "[gateway][cors]") {
  gateway::cors_policy cors{{"https://shop.example", "http://localhost:3000"}};
  REQUIRE(cors.enabled());

  response ok;
  cors.decorate(ok, "https://shop.example");
  CHECK(header_of(ok, "Access-Control-Allow-Origin") == "https://shop.example");
  CHECK(header_of(ok, "Vary") == "Origin");
  CHECK_THAT(header_of(ok, "Access-Control-Expose-Headers"),
             Catch::Contains("RateLimit-Remaining") && Catch::Contains("X-Request-Id")
               && Catch::Contains("ETag") && Catch::Contains("Location"));

  response other;
  cors.decorate(other, "https://evil.example");
  CHECK(header_of(other, "Access-Control-Allow-Origin").empty());
  CHECK(header_of(other, "Vary") == "Origin");

  response no_origin;
  cors.decorate(no_origin, "");
  CHECK(header_of(no_origin, "Access-Control-Allow-Origin").empty());
  CHECK(header_of(no_origin, "Vary") == "Origin");

  // A preflight from an allowed origin.
  auto pre = make_request("OPTIONS", "/products/prod_1",
                          {{"origin", "http://localhost:3000"},
                           {"access-control-request-method", "PATCH"},
                           {"access-control-request-headers", "authorization, content-type"}});
  REQUIRE(gateway::cors_policy::is_preflight(pre));
  auto answer = cors.options_answer(pre, {"GET", "PATCH"});
  CHECK(answer.status == 204);
  CHECK(answer.body.empty());
  CHECK(header_of(answer, "Access-Control-Allow-Methods") == "GET, PATCH, HEAD, OPTIONS");
  CHECK_THAT(header_of(answer, "Access-Control-Allow-Headers"),
             Catch::Contains("Authorization") && Catch::Contains("Content-Type")
               && Catch::Contains("If-Match") && Catch::Contains("Idempotency-Key"));
  CHECK(header_of(answer, "Access-Control-Max-Age") == "600");

  // From another origin: a plain OPTIONS answer, nothing that lets a browser through.
  auto evil = make_request(
    "OPTIONS", "/products",
    {{"origin", "https://evil.example"}, {"access-control-request-method", "POST"}});
  auto refused = cors.options_answer(evil, {"GET", "POST"});
  CHECK(refused.status == 204);
  CHECK(header_of(refused, "Access-Control-Allow-Methods").empty());
  CHECK(header_of(refused, "Access-Control-Allow-Headers").empty());

  // Not a preflight without Access-Control-Request-Method.
  CHECK_FALSE(gateway::cors_policy::is_preflight(
    make_request("OPTIONS", "/products", {{"origin", "https://shop.example"}})));
}

TEST_CASE("CORS: \"*\" allows any origin", "[gateway][cors]") {
  gateway::cors_policy any{{"*"}};
  CHECK(any.allow_origin("https://anything.example") == "*");
  CHECK(any.allow_origin("").empty());
}

TEST_CASE("access log lines are JSON with every field and no secrets", "[gateway][logging]") {
  logging::access_entry e;
  e.request_id = "req-\"quoted\"";
  e.method = "GET";
  e.route = "/products/{id}";
  e.status = 200;
  e.duration_ms = 1.23456;
  e.bytes = 512;
  e.client = "token:0123456789ab";
  e.route_class = "read";
  auto j = json::parse("{" + logging::access_fields(e) + "}");
  CHECK(j["request_id"] == "req-\"quoted\"");
  CHECK(j["method"] == "GET");
  CHECK(j["route"] == "/products/{id}");
  CHECK(j["status"] == 200);
  CHECK(j["duration_ms"].get<double>() == Approx(1.235));
  CHECK(j["bytes"] == 512);
  CHECK(j["client"] == "token:0123456789ab");
  CHECK(j["class"] == "read");
  CHECK_FALSE(j.contains("rate_limit_fallback"));
  e.rate_limited_locally = true;
  j = json::parse("{" + logging::access_fields(e) + "}");
  CHECK(j["rate_limit_fallback"] == true);
  // Bytes that are not UTF-8 cannot break the line.
  CHECK_NOTHROW(json::parse(logging::json_quote("bad \xff\xfe utf-8")));
}
