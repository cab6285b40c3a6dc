// End-to-end: product reads answered from the product's snapshot on the HTTP thread. A read
// right after a write's answer (create, PATCH, an order, a cancellation) shows that write, every
// time; conditional reads answer 304 from the snapshot. Through the real `emporium serve` binary;
// the commerce tests' shared server.

#include "e2e/commerce_support.hpp"
#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "gateway/gateway_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <thread>

namespace {

using namespace emporium::test;
using namespace emporium::test::shop;
using namespace std::chrono_literals;
using json = nlohmann::json;

double snapshot_reads(http_client& c) {
  auto m = c.get("/metrics", admin()).body;
  return metric_value(m, "emporium_product_snapshot_reads_total").value_or(-1);
}

} // namespace

TEST_CASE("products: a GET right after each create and PATCH answer shows that version",
          "[e2e][products][snapshots]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto reads_before = snapshot_reads(c);
  for (int round = 0; round < 10; ++round) {
    auto id = create_product(c);
    auto first = c.get("/products/" + id);
    REQUIRE(first.status == 200);
    CHECK(first.header("etag") == "\"v1\"");
    auto etag = first.header("etag");
    for (int k = 0; k < 10; ++k) {
      auto price = 5'000 + round * 100 + k;
      auto p = c.request("PATCH", "/products/" + id, json{{"price_cents", price}}.dump(),
                         with(with(admin(), "Content-Type", "application/json"), "If-Match", etag));
      INFO(show(p));
      REQUIRE(p.status == 200);
      etag = p.header("etag");
      auto g = c.get("/products/" + id);
      INFO(show(g));
      REQUIRE(g.status == 200);
      CHECK(g.header("etag") == etag);
      CHECK(g.json().at("price_cents") == price);
      CHECK(g.body == p.body);
    }
  }
  // Those reads were answered from the snapshots (no actor message).
  CHECK(snapshot_reads(c) >= reads_before + 100);
}

TEST_CASE(
  "products: If-None-Match is answered 304 from the snapshot, 200 with the body once "
  "the product changed",
  "[e2e][products][snapshots]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto id = create_product(c);
  auto g = c.get("/products/" + id);
  REQUIRE(g.status == 200);
  auto before = snapshot_reads(c);
  auto nm = c.get("/products/" + id, {{"If-None-Match", "W/\"v9\", " + g.header("etag")}});
  CHECK(nm.status == 304);
  CHECK(nm.body.empty());
  CHECK(nm.header("etag") == g.header("etag"));
  CHECK(snapshot_reads(c) == before + 1);

  auto p = c.request("PATCH", "/products/" + id, json{{"name", "Renamed"}}.dump(),
                     with(admin(), "Content-Type", "application/json"));
  REQUIRE(p.status == 200);
  auto changed = c.get("/products/" + id, {{"If-None-Match", g.header("etag")}});
  CHECK(changed.status == 200);
  CHECK(changed.json().at("name") == "Renamed");
  CHECK(changed.header("etag") == p.header("etag"));
}

TEST_CASE("products: a GET right after each order and cancellation shows the stock it left",
          "[e2e][products][snapshots][commerce]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  constexpr std::int64_t start = 1'000;
  auto product = create_product(c, {start, 100, 10});
  auto buyer = new_shopper(c);
  REQUIRE(api_stock(c, product) == start); // active, with its snapshot
  auto stock = start;
  for (int k = 0; k < 40; ++k) {
    auto qty = 1 + k % 3;
    auto o = c.request("POST", "/orders", order_body({{product, qty}}).dump(),
                       with(buyer.auth(), "Content-Type", "application/json"));
    INFO("order " << k << ": " << show(o));
    REQUIRE(o.status == 201);
    stock -= qty;
    CHECK(api_stock(c, product) == stock);
    if (k % 4 == 3) {
      auto id = o.json().at("id").get<std::string>();
      auto x = c.request("POST", "/orders/" + id + "/cancel", "",
                         with(buyer.auth(), "Content-Type", "application/json"));
      INFO("cancel " << k << ": " << show(x));
      REQUIRE(x.status == 200);
      stock += qty;
      CHECK(api_stock(c, product) == stock);
    }
  }
}

TEST_CASE(
  "products: a product read only from its snapshot stays active past the idle timeout, "
  "and passivates once nobody reads it",
  "[e2e][products][snapshots]") {
  // Reads from a snapshot never reach the manager: without asking the registry, the manager
  // would passivate a product read thousands of times a second, and the next reads would load
  // it from PostgreSQL again.
  server_process srv{{{"EMPORIUM_ACTORS_IDLE_TIMEOUT_S", "1"}}};
  http_client c{srv.host(), srv.port(), 30s};
  auto id = create_product(c);
  REQUIRE(c.get("/products/" + id).status == 200);
  auto product_metric = [&](const char* name) {
    auto m = c.get("/metrics", admin()).body;
    return metric_value(m, std::string{name} + "{kind=\"product\"}").value_or(-1);
  };
  const auto activations = product_metric("emporium_actor_activations_total");
  const auto passivations = product_metric("emporium_actor_passivations_total");
  REQUIRE(activations >= 1);
  const auto reads_before = snapshot_reads(c);
  // Four idle timeouts of reads, each one from the snapshot.
  const auto until = std::chrono::steady_clock::now() + 4s;
  int reads = 0;
  while (std::chrono::steady_clock::now() < until) {
    REQUIRE(c.get("/products/" + id).status == 200);
    ++reads;
    std::this_thread::sleep_for(20ms);
  }
  CHECK(product_metric("emporium_actor_activations_total") == activations);
  CHECK(product_metric("emporium_actor_passivations_total") == passivations);
  CHECK(snapshot_reads(c) >= reads_before + reads);
  // Nobody reads it now: it passivates (an idle timeout plus a sweep period at most, 1.25 s).
  std::this_thread::sleep_for(3s);
  CHECK(product_metric("emporium_actor_passivations_total") > passivations);
}
