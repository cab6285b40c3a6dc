// Hostile: lookups of ids that do not exist. Each such id activates an entity actor that pays
// a Redis GET and a PostgreSQL query; were it to live for the whole idle timeout (60 s by
// default), a client could fill the node with empty actors. An entity that finds no row
// asks its manager to passivate it at once: after the flood, the active actors are back to
// where they were, long before the idle timeout.

#include "core/ids.hpp"
#include "faults/fault_support.hpp"
#include "hostile/hostile_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <sstream>
#include <thread>

namespace {

using namespace emporium::faults;
using namespace emporium::hostile;
using emporium::test::http_client;
using emporium::test::server_process;
using namespace std::chrono_literals;

double active(const std::string& metrics, const char* kind) {
  return metric(metrics, std::string{"emporium_actors_active{kind=\""} + kind + "\"}");
}

double active_total(const std::string& metrics) {
  double sum = 0;
  for (const char* k : {"product", "customer", "cart", "order"})
    sum += active(metrics, k);
  return sum;
}

} // namespace

TEST_CASE("1,500 lookups of ids that do not exist leave no live actors behind",
          "[hostile][actors]") {
  services svc;
  service_guard guard{svc};
  // The idle timeout is the default (60 s): only the immediate passivation of absent entities
  // can bring the count back within this test's wait.
  server_process srv{fault_env()};
  http_client c{srv.host(), srv.port(), 30s};
  auto buyer = new_shopper(c);
  auto product = create_product(c, 10);
  REQUIRE(c.get("/products/" + product).status == 200);

  auto baseline_metrics = scrape(srv);
  auto baseline = active_total(baseline_metrics);
  auto rss_before = srv.rss_kib();
  auto log_before = log_lines(srv);

  // 1,500 lookups: 1,200 products (anyone), 100 each of customers, carts and orders (a signed
  // in customer: absent and foreign resources both answer 404).
  std::map<int, std::size_t> by_status;
  auto lookup = [&](const std::string& path, const emporium::test::header_map& h) {
    auto r = c.get(path, h);
    ++by_status[r.status];
  };
  for (int i = 0; i < 1'200; ++i)
    lookup("/products/" + emporium::core::new_id("prod"), {});
  for (int i = 0; i < 100; ++i) {
    lookup("/customers/" + emporium::core::new_id("cust"), buyer.auth());
    lookup("/carts/" + emporium::core::new_id("cart"), buyer.auth());
    lookup("/orders/" + emporium::core::new_id("ord"), buyer.auth());
  }
  CHECK(by_status[404] == 1'500);
  auto rss_peak = srv.rss_kib();

  // Passivation is a message round trip through the manager: give it a moment, far below the
  // 60 s idle timeout.
  double after = -1;
  std::string metrics;
  for (int i = 0; i < 50; ++i) {
    metrics = scrape(srv);
    after = active_total(metrics);
    if (after <= baseline)
      break;
    std::this_thread::sleep_for(100ms);
  }
  INFO(metrics);
  CHECK(after <= baseline);
  // The product that exists is still served, and its actor was not affected.
  CHECK(c.get("/products/" + product).status == 200);

  std::ostringstream figures;
  figures << "active actors " << baseline << " before, " << after << " after; server RSS "
          << rss_before / 1024 << " MiB before, " << rss_peak / 1024 << " MiB after the flood; "
          << (log_lines(srv) - log_before) << " log lines";
  report_hostile("lookups of absent ids", "1,500 GETs of valid random ids", by_status,
                 figures.str());
}
