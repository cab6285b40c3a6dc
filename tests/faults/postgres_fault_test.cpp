// Fault: PostgreSQL killed (`pg_ctl stop -m immediate`) under load, then started again. Writes and
// uncached reads must answer 503 problem+json with Retry-After within the bound
// (postgres.connect_timeout_ms, 2 s by default, plus a margin), /readyz 503, never a 500, never a
// hang; once PostgreSQL is back the pool reconnects and service resumes by itself, without a
// restart of Emporium, with nothing half-written, and every write that was acknowledged (before,
// during or after the outage) is in PostgreSQL.

#include "core/ids.hpp"
#include "faults/fault_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <iostream>
#include <map>
#include <mutex>
#include <sstream>

namespace {

using namespace emporium::faults;
using emporium::test::http_client;
using emporium::test::http_response;
using emporium::test::server_process;
using namespace std::chrono_literals;

/// postgres.connect_timeout_ms (default) plus a generous margin for a loaded 2-core machine
/// and sanitizer builds: liveness, not speed.
constexpr double answer_bound_ms = 2'000 + 2'000;

bool is_write(const sample& s) {
  return s.op.rfind("GET", 0) != 0;
}

std::int64_t scalar(pqxx::connection& conn, const std::string& sql, const std::string& arg) {
  pqxx::read_transaction tx{conn};
  auto r = tx.exec_params(sql, arg);
  return r.at(0)[0].is_null() ? 0 : r.at(0)[0].as<std::int64_t>();
}

/// The writes the load was told succeeded, to be found in PostgreSQL afterwards.
struct acknowledged {
  struct patch {
    std::int64_t version = 0;
    std::int64_t price = 0;
  };
  std::mutex mtx;
  std::vector<std::pair<std::string, std::string>> products; ///< (id, sku) answered 201
  std::vector<std::string> orders;                           ///< ids answered 201
  std::map<std::string, patch>
    latest_patch; ///< product → the acknowledged PATCH of highest version
  std::map<std::string, int>
    unanswered_patches; ///< product → PATCHes answered otherwise (in doubt)

  void patched(const std::string& id, const http_response& r, std::int64_t price) {
    std::lock_guard<std::mutex> g{mtx};
    if (r.status != 200) {
      ++unanswered_patches[id];
      return;
    }
    // The version travels in the ETag: "v<version>".
    auto tag = r.header("etag");
    auto version = std::stoll(tag.substr(tag.find('v') + 1));
    auto& p = latest_patch[id];
    if (version > p.version)
      p = patch{version, price};
  }
};

} // namespace

TEST_CASE(
  "PostgreSQL stopped (immediate) and started under load: 503 with Retry-After "
  "in bounded time, /readyz 503, resumes by itself",
  "[faults][postgres]") {
  services svc;
  durable_commits durable; // reset after the guard has brought PostgreSQL back
  service_guard guard{svc};
  server_process srv{fault_env()};
  http_client c{srv.host(), srv.port(), 30s};

  constexpr std::int64_t initial_stock = 1'000'000;
  std::vector<std::string> products;
  for (int i = 0; i < 4; ++i)
    products.push_back(create_product(c, initial_stock));
  auto buyer = new_shopper(c);
  auto first = c.request("POST", "/orders", order_body({{products[0], 1}}).dump(), buyer.auth());
  REQUIRE(first.status == 201);
  auto order_id = first.json().at("id").get<std::string>();
  for (const auto& p : products)
    REQUIRE(c.get("/products/" + p).status == 200);
  auto sku_prefix = emporium::test::unique("pg-fault");
  auto acks = std::make_shared<acknowledged>();
  // Products only PATCHes change (no order touches them), so that each version they reach in
  // PostgreSQL is one PATCH: what was acknowledged can be checked exactly.
  std::vector<std::string> patched;
  for (int i = 0; i < 3; ++i)
    patched.push_back(create_product(c, 1));

  auto any = [products](std::mt19937& rng) {
    return products[std::uniform_int_distribution<std::size_t>{0, products.size() - 1}(rng)];
  };
  // Every operation: its success, or 503. Never 500, never 504, never no answer.
  std::vector<operation> ops;
  ops.push_back({"POST /products",
                 6,
                 [sku_prefix, acks](http_client& cl, std::mt19937&) {
                   auto sku = emporium::test::unique(sku_prefix);
                   json body{{"sku", sku},
                             {"name", "Fault widget"},
                             {"price_cents", 500},
                             {"currency", "USD"},
                             {"stock", 5}};
                   auto r = cl.request("POST", "/products", body.dump(), admin());
                   if (r.status == 201) {
                     std::lock_guard<std::mutex> g{acks->mtx};
                     acks->products.emplace_back(r.json().at("id").get<std::string>(), sku);
                   }
                   return r;
                 },
                 {201, 503}});
  ops.push_back({"PATCH /products/{id}",
                 6,
                 [patched, acks](http_client& cl, std::mt19937& rng) {
                   auto price = std::uniform_int_distribution<int>{100, 9'999}(rng);
                   auto id = patched[std::uniform_int_distribution<std::size_t>{0, 2}(rng)];
                   try {
                     auto r = cl.request("PATCH", "/products/" + id,
                                         json{{"price_cents", price}}.dump(), admin());
                     acks->patched(id, r, price);
                     return r;
                   } catch (...) {
                     acks->patched(id, http_response{}, price);
                     throw;
                   }
                 },
                 {200, 503}});
  ops.push_back(
    {"POST /orders",
     6,
     [any, buyer, acks](http_client& cl, std::mt19937& rng) {
       auto r = cl.request("POST", "/orders", order_body({{any(rng), 1}}).dump(), buyer.auth());
       if (r.status == 201) {
         std::lock_guard<std::mutex> g{acks->mtx};
         acks->orders.push_back(r.json().at("id").get<std::string>());
       }
       return r;
     },
     {201, 503}});
  // Reads that always need PostgreSQL: a product that does not exist (a new id every time: no
  // actor, no cache), a listing, the customer's orders.
  ops.push_back({"GET /products/{unknown}",
                 4,
                 [](http_client& cl, std::mt19937&) {
                   return cl.get("/products/" + emporium::core::new_id("prod"));
                 },
                 {404, 503}});
  ops.push_back({"GET /products",
                 4,
                 [](http_client& cl, std::mt19937&) { return cl.get("/products?limit=5"); },
                 {200, 503}});
  ops.push_back({"GET /customers/{id}/orders",
                 4,
                 [buyer](http_client& cl, std::mt19937&) {
                   return cl.get("/customers/" + buyer.id + "/orders?limit=5", buyer.auth());
                 },
                 {200, 503}});
  // Reads an active actor may answer from memory.
  ops.push_back(
    {"GET /products/{id}",
     6,
     [any](http_client& cl, std::mt19937& rng) { return cl.get("/products/" + any(rng)); },
     {200, 503}});
  ops.push_back({"GET /orders/{id}",
                 3,
                 [order_id, buyer](http_client& cl, std::mt19937&) {
                   return cl.get("/orders/" + order_id, buyer.auth());
                 },
                 {200, 503}});
  ops.push_back({"GET /readyz",
                 2,
                 [](http_client& cl, std::mt19937&) { return cl.get("/readyz"); },
                 {200, 503}});

  load_generator load{srv, ops, 4};
  load.start();
  std::this_thread::sleep_for(1500ms);

  auto fault_start = steady::now();
  svc.stop_postgres_immediate();
  auto stopped = steady::now();

  // What a client sees right away.
  auto t = steady::now();
  auto ready = c.get("/readyz");
  auto readyz_ms = millis(t, steady::now());
  t = steady::now();
  auto write = c.request("POST", "/products",
                         json{{"sku", emporium::test::unique(sku_prefix)},
                              {"name", "Fault widget"},
                              {"price_cents", 500},
                              {"currency", "USD"},
                              {"stock", 5}}
                           .dump(),
                         admin());
  auto write_ms = millis(t, steady::now());
  std::this_thread::sleep_for(fault_start + 5s - steady::now());
  auto during_metrics = scrape(srv);

  svc.start_postgres();
  auto returned = steady::now();

  // Recovered: a write commits and /readyz says ready again.
  double recovery_ms = -1;
  std::size_t main_201 = 0; // products this thread created (with the same SKU prefix)
  while (steady::now() < returned + 20s) {
    auto w = c.request("POST", "/products",
                       json{{"sku", emporium::test::unique(sku_prefix)},
                            {"name", "Fault widget"},
                            {"price_cents", 500},
                            {"currency", "USD"},
                            {"stock", 5}}
                         .dump(),
                       admin());
    main_201 += w.status == 201;
    if (w.status == 201 && c.get("/readyz").status == 200) {
      recovery_ms = millis(returned, steady::now());
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  auto recovered = steady::now();
  // Every worker of the pool has its connection back: writes keyed to all of them commit.
  int later_writes_ok = 0;
  for (int i = 0; i < 16; ++i) {
    auto id = create_product(c, 1);
    if (c.request("PATCH", "/products/" + id, json{{"price_cents", 700}}.dump(), admin()).status
        == 200)
      ++later_writes_ok;
  }
  std::this_thread::sleep_for(1s);
  load.stop();
  bool same_process = srv.running();
  auto after_metrics = scrape(srv);
  auto breaker_during = metric(during_metrics,
                               "emporium_circuit_breaker_state{dependency=\"postgres\"}");
  auto breaker_after = metric(after_metrics,
                              "emporium_circuit_breaker_state{dependency=\"postgres\"}");

  // -- what the clients saw ---------------------------------------------------------------------
  auto all = load.samples();
  auto whole = summarize(all, steady::time_point::min(), steady::time_point::max());
  auto during = summarize(all, stopped, returned);
  auto during_writes = summarize(all, stopped, returned, is_write);
  auto settled = summarize(all, recovered + 1s, steady::time_point::max());
  std::size_t writes_not_503 = during_writes.requests
                               - (during_writes.by_status.count(503)
                                    ? during_writes.by_status.at(503)
                                    : 0);

  // -- what PostgreSQL holds
  // ------------------------------------------------------------------------
  pqxx::connection conn{emporium::test::pg_url()};
  std::size_t created_201 = 0, created_other = 0;
  for (const auto& s : all)
    if (s.op == "POST /products")
      (s.status == 201 ? created_201 : created_other)++;
  auto stored = static_cast<std::size_t>(scalar(
    conn, "SELECT count(*) FROM products WHERE sku LIKE $1 || '%' AND stock = 5", sku_prefix));
  // Every 201 is stored; beyond them, at most the writes whose answer was not 201 (a COMMIT in
  // doubt when PostgreSQL died may have gone through).
  created_201 += main_201;
  bool products_ok = stored >= created_201 && stored <= created_201 + created_other;
  bool stock_ok = true;
  std::ostringstream stock_text;
  for (const auto& p : products) {
    auto stock = scalar(conn, "SELECT stock FROM products WHERE id = $1", p);
    auto ordered = scalar(conn,
                          "SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders o ON "
                          "o.id = l.order_id WHERE l.product_id = $1 AND o.status <> 'cancelled'",
                          p);
    if (stock + ordered != initial_stock) {
      stock_ok = false;
      stock_text << " " << p << ": " << stock << " + " << ordered << " != " << initial_stock;
    }
  }

  // Every acknowledged write, one by one.
  std::size_t acked_products_missing = 0, acked_orders_missing = 0, acked_patches_lost = 0;
  std::ostringstream lost;
  {
    std::lock_guard<std::mutex> g{acks->mtx};
    pqxx::read_transaction tx{conn};
    for (const auto& [id, sku] : acks->products)
      if (tx.exec_params("SELECT 1 FROM products WHERE id = $1 AND sku = $2", id, sku).empty())
        ++acked_products_missing;
    for (const auto& id : acks->orders)
      if (tx.exec_params("SELECT 1 FROM orders o JOIN order_lines l ON l.order_id = o.id "
                         "WHERE o.id = $1 AND o.customer_id = $2",
                         id, buyer.id)
            .empty())
        ++acked_orders_missing;
    // Only PATCHes change these products, one version each: PostgreSQL holds the acknowledged
    // PATCH of highest version with its price, or later versions that only PATCHes answered
    // otherwise (in doubt: a 503 whose COMMIT may have gone through) can have written.
    for (const auto& [id, p] : acks->latest_patch) {
      auto row =
        tx.exec_params("SELECT version, price_cents FROM products WHERE id = $1", id).at(0);
      auto version = row[0].as<std::int64_t>();
      auto price = row[1].as<std::int64_t>();
      auto in_doubt = acks->unanswered_patches.count(id) ? acks->unanswered_patches.at(id) : 0;
      if (version < p.version || (version == p.version && price != p.price)
          || version - p.version > in_doubt) {
        ++acked_patches_lost;
        lost << " " << id << ": acknowledged v" << p.version << " price " << p.price << ", stored v"
             << version << " price " << price << ";";
      }
    }
  }
  std::size_t acked_orders = acks->orders.size(), acked_patches = acks->latest_patch.size();

  bool ok = acked_products_missing == 0 && acked_orders_missing == 0 && acked_patches_lost == 0
            && breaker_during != 0 && breaker_after == 0 && whole.unexpected == 0
            && whole.bad_503 == 0 && during.longest_ms < answer_bound_ms && writes_not_503 == 0
            && ready.status == 503 && write.status == 503 && readyz_ms < answer_bound_ms
            && write_ms < answer_bound_ms && recovery_ms >= 0 && later_writes_ok == 16
            && settled.by_status.count(503) == 0 && same_process && products_ok && stock_ok;
  std::ostringstream inv;
  inv << "unexpected answers (500, 504, none) " << whole.unexpected << " of " << whole.requests
      << "; 503 without problem+json or Retry-After " << whole.bad_503
      << "; writes during the outage not 503: " << writes_not_503 << " of "
      << during_writes.requests << "; /readyz " << ready.status << " in "
      << static_cast<long>(readyz_ms) << " ms; a write " << write.status << " in "
      << static_cast<long>(write_ms) << " ms (bound " << static_cast<long>(answer_bound_ms)
      << "); breaker state during the outage " << breaker_during << ", after " << breaker_after
      << "; acknowledged orders missing " << acked_orders_missing << " of " << acked_orders
      << ", products missing " << acked_products_missing << ", products whose acknowledged PATCH "
      << "was lost " << acked_patches_lost << " of " << acked_patches << "; 503 after recovery "
      << (settled.by_status.count(503) ? settled.by_status.at(503) : 0)
      << "; writes after recovery " << later_writes_ok << "/16; same process "
      << (same_process ? "yes" : "NO") << "; products stored " << stored << " for " << created_201
      << " answered 201; stock conserved " << (stock_ok ? "yes" : "NO" + stock_text.str());
  report_fault("postgres-immediate-stop-start", during, recovery_ms, ok, inv.str());

  for (const auto& e : whole.unexpected_examples)
    UNSCOPED_INFO("unexpected: " << e);
  CHECK(whole.unexpected == 0);
  CHECK(whole.bad_503 == 0);
  CHECK(during.requests > 0);
  CHECK(during.longest_ms < answer_bound_ms);
  CHECK(writes_not_503 == 0);
  INFO("/readyz during the outage: " << ready.status << " " << ready.body);
  CHECK(ready.status == 503);
  CHECK(ready.has_header("retry-after"));
  CHECK(readyz_ms < answer_bound_ms);
  INFO("a write during the outage: " << write.status << " " << write.body);
  CHECK(write.status == 503);
  CHECK(write.header("content-type").rfind("application/problem+json", 0) == 0);
  CHECK(write.has_header("retry-after"));
  CHECK(write_ms < answer_bound_ms);
  CHECK(recovery_ms >= 0);
  CHECK(later_writes_ok == 16);
  CHECK(settled.by_status.count(503) == 0);
  CHECK(same_process);
  CHECK(products_ok);
  CHECK(breaker_during != 0); // open (1) or half-open (2): PostgreSQL was known down
  CHECK(breaker_after == 0);
  CHECK(acked_orders > 0);
  CHECK(acked_patches > 0);
  CHECK(acked_orders_missing == 0);
  CHECK(acked_products_missing == 0);
  INFO(lost.str());
  CHECK(acked_patches_lost == 0);
  INFO(stock_text.str());
  CHECK(stock_ok);
}
