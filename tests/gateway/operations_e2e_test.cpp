// End-to-end: what operators see of the real server: /metrics checked by Prometheus's
// own parser (promtool) and moving with traffic, request ids in answers, problems and logs,
// structured access logs without secrets, /openapi.json, CORS.

#include "gateway/gateway_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <string>

namespace {

using namespace emporium::test;
using json = nlohmann::json;

std::string promtool_check(const std::string& exposition, int& status) {
  std::string out;
  status = run_with_input("promtool check metrics", exposition, out);
  return out;
}

double value_or_zero(const std::string& m, const std::string& sample) {
  return metric_value(m, sample).value_or(0.0);
}

} // namespace

TEST_CASE("gateway: /metrics parses with promtool and its counters move with traffic",
          "[e2e][gateway][metrics]") {
  server_process srv;
  http_client c{srv.host(), srv.port()};
  auto before = scrape(srv);
  int status = -1;
  auto lint = promtool_check(before, status);
  INFO("promtool (Debian package prometheus) said:\n"
       << lint << "\nexposition:\n"
       << before.substr(0, 3000));
  REQUIRE(status != 127); // promtool missing: scripts/lib.sh installs the prometheus package
  CHECK(status == 0);

  const std::string healthz_ok =
    R"(emporium_http_requests_total{method="GET",route="/healthz",status_class="2xx"})";
  const std::string healthz_count =
    R"(emporium_http_request_duration_seconds_count{method="GET",route="/healthz",status_class="2xx"})";
  const std::string product_404 =
    R"(emporium_http_requests_total{method="GET",route="/products/{id}",status_class="4xx"})";
  const std::string unmatched =
    R"(emporium_http_requests_total{method="GET",route="unmatched",status_class="4xx"})";
  const std::string created =
    R"(emporium_http_requests_total{method="POST",route="/products",status_class="2xx"})";

  for (int i = 0; i < 5; ++i)
    REQUIRE(c.get("/healthz").status == 200);
  REQUIRE(c.get("/products/prod_00000000000000000000000000").status == 404);
  REQUIRE(c.get("/no/such/route/" + unique("x")).status == 404);
  json body{{"sku", unique("gw-sku")},
            {"name", "Metered"},
            {"price_cents", 100},
            {"currency", "EUR"},
            {"stock", 3}};
  auto made = c.request("POST", "/products", body.dump(), {{"Authorization", admin_bearer()}});
  REQUIRE(made.status == 201);
  // A fresh product is loaded by its actor on first read.
  REQUIRE(c.get("/products/" + made.json()["id"].get<std::string>()).status == 200);

  auto after = scrape(srv);
  lint = promtool_check(after, status);
  INFO("promtool said:\n" << lint);
  CHECK(status == 0);
  CHECK(value_or_zero(after, healthz_ok) - value_or_zero(before, healthz_ok) == 5);
  CHECK(value_or_zero(after, healthz_count) - value_or_zero(before, healthz_count) == 5);
  CHECK(value_or_zero(after, product_404) - value_or_zero(before, product_404) == 1);
  CHECK(value_or_zero(after, unmatched) - value_or_zero(before, unmatched) == 1);
  CHECK(value_or_zero(after, created) - value_or_zero(before, created) == 1);
  // The raw path of an unknown route never becomes a label.
  CHECK(after.find("/no/such/route") == std::string::npos);
  // The scrape itself is in flight while it renders; this client's connection is open.
  CHECK(value_or_zero(after, "emporium_http_requests_in_flight") >= 1);
  CHECK(value_or_zero(after, "emporium_http_connections_open") >= 1);
  CHECK(value_or_zero(after, R"(emporium_actor_activations_total{kind="product"})") >= 1);
  CHECK(metric_value(after, "emporium_db_pool_in_use").has_value());
  CHECK(metric_value(after, "emporium_db_pool_waiting").has_value());
  CHECK(metric_value(after, "emporium_cache_hits_total").has_value());
  CHECK(metric_value(after, "emporium_cache_misses_total").has_value());
  CHECK(metric_value(after, R"(emporium_circuit_breaker_state{dependency="postgres"})") == 0.0);
  CHECK(metric_value(after, "emporium_rate_limit_redis_fallbacks_total").has_value());
  for (const char* kind : {"product", "customer", "cart", "order"})
    CHECK(metric_value(after, std::string{"emporium_actors_active{kind=\""} + kind + "\"}"));
}

TEST_CASE(
  "gateway: request ids are echoed, generated, put into problems and every log line, "
  "and logs carry no token",
  "[e2e][gateway][logs]") {
  server_process srv{{{"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "3"},
                      {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "0.01"}}};
  http_client c{srv.host(), srv.port()};
  // Signed as the server signs the tokens it issues (no session behind it: it is verified,
  // found dead, and charged to the address), and a real one.
  const std::string secret = fresh_token();
  const auto customer = new_customer(c);
  const std::string& live = customer.tokens.at(0);

  auto mine = unique("client-id");
  auto r = c.get("/healthz", {{"X-Request-Id", mine}});
  CHECK(r.status == 200);
  CHECK(r.header("X-Request-Id") == mine);

  auto generated = c.get("/healthz");
  auto gen_id = generated.header("X-Request-Id");
  CHECK(gen_id.rfind("req_", 0) == 0);
  CHECK(gen_id != mine);

  // Invalid ids are replaced, not echoed.
  for (const std::string& bad : {std::string(129, 'x'), std::string("two words")}) {
    auto replaced = c.get("/healthz", {{"X-Request-Id", bad}});
    CHECK(replaced.header("X-Request-Id").rfind("req_", 0) == 0);
  }

  // Problems name the request as their instance, with a bearer token in the request.
  auto problem_id = unique("problem-id");
  auto missing = c.get("/products/prod_00000000000000000000000000",
                       {{"X-Request-Id", problem_id}, {"Authorization", "Bearer " + secret}});
  REQUIRE(missing.status == 404);
  CHECK(missing.header("X-Request-Id") == problem_id);
  CHECK(missing.json()["instance"] == problem_id);

  auto live_id = unique("live-id");
  auto own = c.get("/customers/" + customer.id,
                   {{"X-Request-Id", live_id}, {"Authorization", "Bearer " + live}});
  REQUIRE(own.status == 200);

  // So does a 429.
  http_client limited{srv.host(), srv.port()};
  http_response last;
  for (int i = 0; i < 4; ++i)
    last = limited.get("/products?limit=1", {{"Authorization", "Bearer " + secret}});
  REQUIRE(last.status == 429);
  CHECK(last.json()["instance"] == last.header("X-Request-Id"));

  // The access log: one JSON line per request with the route pattern and the hashed identity.
  srv.stop_term();
  auto lines = json_log_lines(srv);
  REQUIRE_FALSE(lines.empty());
  const json* access = nullptr;
  const json* live_access = nullptr;
  for (const auto& l : lines) {
    CHECK(l.contains("time"));
    CHECK(l.contains("level"));
    if (l.value("request_id", "") == problem_id)
      access = &l;
    if (l.value("request_id", "") == live_id)
      live_access = &l;
  }
  REQUIRE(access != nullptr);
  CHECK((*access)["logger"] == "access");
  CHECK((*access)["method"] == "GET");
  CHECK((*access)["route"] == "/products/{id}");
  CHECK((*access)["status"] == 404);
  CHECK((*access)["duration_ms"].is_number());
  CHECK((*access)["bytes"] == missing.body.size());
  // The dead token's hash prefix, never the token; a live session as its customer.
  CHECK_THAT((*access)["client"].get<std::string>(), Catch::Contains("unverified-token:"));
  REQUIRE(live_access != nullptr);
  CHECK((*live_access)["client"] == "customer:" + customer.id);
  int generated_lines = 0;
  for (const auto& l : lines)
    if (l.value("request_id", "") == gen_id)
      ++generated_lines;
  CHECK(generated_lines == 1);

  // Never the token, the admin key or the Authorization header.
  std::ifstream in{srv.log_path()};
  std::stringstream all;
  all << in.rdbuf();
  CHECK(all.str().find(secret) == std::string::npos);
  CHECK(all.str().find(live) == std::string::npos);
  CHECK(all.str().find(customer.password) == std::string::npos);
  CHECK(all.str().find(test_admin_key) == std::string::npos);
}

TEST_CASE("gateway: /openapi.json is served as an OpenAPI 3.1 document of the API",
          "[e2e][gateway][openapi]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto r = c.get("/openapi.json");
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type").rfind("application/json", 0) == 0);
  auto doc = r.json();
  CHECK(doc["openapi"] == "3.1.0");
  for (const char* path : {"/products", "/products/{id}", "/orders/{id}/events", "/ws", "/search",
                           "/metrics", "/openapi.json"})
    CHECK(doc["paths"].contains(path));
  CHECK(doc["paths"]["/products"].contains("get"));
  CHECK(doc["paths"]["/products"].contains("post"));
}

TEST_CASE("gateway: CORS answers preflights for configured origins only", "[e2e][gateway][cors]") {
  SECTION("configured origins") {
    server_process srv{
      {{"EMPORIUM_HTTP_CORS_ORIGINS", "https://shop.example,http://localhost:3000"}}};
    http_client c{srv.host(), srv.port()};
    auto pre = c.request("OPTIONS", "/products", "",
                         {{"Origin", "https://shop.example"},
                          {"Access-Control-Request-Method", "POST"},
                          {"Access-Control-Request-Headers", "authorization, content-type"}});
    CHECK(pre.status == 204);
    CHECK(pre.header("Access-Control-Allow-Origin") == "https://shop.example");
    CHECK_THAT(pre.header("Access-Control-Allow-Methods"),
               Catch::Contains("POST") && Catch::Contains("GET"));
    CHECK_THAT(pre.header("Access-Control-Allow-Headers"),
               Catch::Contains("Authorization") && Catch::Contains("Content-Type"));
    CHECK(pre.header("Access-Control-Max-Age") == "600");
    CHECK_THAT(pre.header("Vary"), Catch::Contains("Origin"));
    CHECK(pre.body.empty());
    CHECK_FALSE(pre.header("X-Request-Id").empty());

    auto get = c.get("/healthz", {{"Origin", "http://localhost:3000"}});
    CHECK(get.status == 200);
    CHECK(get.header("Access-Control-Allow-Origin") == "http://localhost:3000");
    CHECK_THAT(get.header("Access-Control-Expose-Headers"), Catch::Contains("RateLimit-Remaining"));
    CHECK_THAT(get.header("Vary"), Catch::Contains("Origin"));

    auto evil_pre = c.request(
      "OPTIONS", "/products", "",
      {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}});
    CHECK(evil_pre.status == 204);
    CHECK_FALSE(evil_pre.has_header("Access-Control-Allow-Origin"));
    CHECK_FALSE(evil_pre.has_header("Access-Control-Allow-Methods"));
    auto evil = c.get("/healthz", {{"Origin", "https://evil.example"}});
    CHECK(evil.status == 200);
    CHECK_FALSE(evil.has_header("Access-Control-Allow-Origin"));
    CHECK_THAT(evil.header("Vary"), Catch::Contains("Origin"));

    // OPTIONS on a path that does not exist is still a 404.
    CHECK(c.request("OPTIONS", "/nope", "",
                    {{"Origin", "https://shop.example"}, {"Access-Control-Request-Method", "GET"}})
            .status
          == 404);
  }

  SECTION("none by default") {
    auto& srv = shared_server();
    http_client c{srv.host(), srv.port()};
    auto pre = c.request(
      "OPTIONS", "/products", "",
      {{"Origin", "https://shop.example"}, {"Access-Control-Request-Method", "POST"}});
    CHECK(pre.status == 204);
    CHECK(pre.header("Allow") == "GET, POST, HEAD, OPTIONS");
    CHECK_FALSE(pre.has_header("Access-Control-Allow-Origin"));
    CHECK_FALSE(pre.has_header("Access-Control-Allow-Methods"));
    auto get = c.get("/healthz", {{"Origin", "https://shop.example"}});
    CHECK_FALSE(get.has_header("Access-Control-Allow-Origin"));
  }
}
