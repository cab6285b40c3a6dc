// The bench's own correctness check (bench/accounting.*) against orders placed through the real
// server: it passes when every acknowledged order is stored once with its lines and the stock
// adds up, and fails when an acknowledged order is missing, when an order was committed but not
// acknowledged (beyond the checkouts of unknown outcome), when lines differ, and when stock went
// missing behind the orders' back. It reports each product's stock after the run and which
// acknowledged orders were cancelled since (hot-sku's oversell check reads both).

#include "bench/accounting.hpp"
#include "e2e/commerce_support.hpp"
#include "gateway/gateway_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <string>
#include <vector>

namespace {

using namespace emporium::test;
namespace accounting = emporium::bench::accounting;
using json = nlohmann::json;

std::string failures(const accounting::verdict& v) {
  std::string out;
  for (const auto& f : v.failures)
    out += f + "\n";
  return out;
}

bool mentions(const accounting::verdict& v, const std::string& needle) {
  for (const auto& f : v.failures)
    if (f.find(needle) != std::string::npos)
      return true;
  return false;
}

} // namespace

TEST_CASE(
  "bench accounting: passes on a consistent run, fails on an acknowledged order that is "
  "missing and on the other broken invariants",
  "[e2e][bench][accounting]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  json body{{"sku", unique("acct-sku")},
            {"name", "Accounting widget"},
            {"price_cents", 700},
            {"currency", "USD"},
            {"stock", 10},
            {"weight_grams", 100}};
  auto p = c.request("POST", "/products", body.dump(), admin());
  INFO(show(p));
  REQUIRE(p.status == 201);
  auto product = p.json().at("id").get<std::string>();
  auto who = new_customer(c);

  auto before = accounting::take_snapshot(pg_url(), {product});
  REQUIRE(before.stock.at(product) == 10);
  std::vector<accounting::acknowledged_order> acks;
  for (int quantity : {2, 1}) {
    auto r = c.request("POST", "/orders", order_body({{product, quantity}}).dump(),
                       bearer(who.tokens[0]));
    INFO(show(r));
    REQUIRE(r.status == 201);
    auto o = r.json();
    accounting::acknowledged_order a{
      o.at("id").get<std::string>(), o.at("customer_id").get<std::string>(), {}};
    for (const auto& l : o.at("items"))
      a.lines.emplace_back(l.at("product_id").get<std::string>(),
                           l.at("quantity").get<std::int64_t>());
    acks.push_back(std::move(a));
  }

  SECTION("all is right: passes") {
    auto v = accounting::verify(pg_url(), before, acks, {who.id}, 0);
    INFO(failures(v));
    CHECK(v.passed);
    CHECK(v.failures.empty());
    CHECK(v.acknowledged == 2);
    CHECK(v.found_once == 2);
    CHECK(v.unacknowledged_committed == 0);
    CHECK(v.products_mismatched == 0);
    CHECK(v.units_ordered == 3);
    CHECK(v.stock_after.at(product) == 7);
    CHECK(v.cancelled.empty());
  }
  SECTION("a cancelled order: named as cancelled, its units back in the stock, still balanced") {
    auto r = c.request("POST", "/orders/" + acks.front().order_id + "/cancel", "", admin());
    INFO(show(r));
    REQUIRE(r.status == 200);
    auto v = accounting::verify(pg_url(), before, acks, {who.id}, 0);
    INFO(failures(v));
    CHECK(v.passed);
    CHECK(v.cancelled == std::vector<std::string>{acks.front().order_id});
    CHECK(v.stock_after.at(product) == 9);
    CHECK(v.units_ordered == 1);
  }
  SECTION("an acknowledged order missing from the database: fails, naming it") {
    auto lost = acks;
    lost.push_back({"ord_" + unique("never-stored"), who.id, {{product, 1}}});
    auto v = accounting::verify(pg_url(), before, lost, {who.id}, 0);
    INFO(failures(v));
    CHECK_FALSE(v.passed);
    CHECK(v.found_once == 2);
    CHECK(mentions(v, lost.back().order_id));
  }
  SECTION("a committed order never acknowledged: fails, unless a checkout's outcome was unknown") {
    auto one = std::vector<accounting::acknowledged_order>{acks.front()};
    auto strict = accounting::verify(pg_url(), before, one, {who.id}, 0);
    INFO(failures(strict));
    CHECK_FALSE(strict.passed);
    CHECK(strict.unacknowledged_committed == 1);
    auto lenient = accounting::verify(pg_url(), before, one, {who.id}, 1);
    INFO(failures(lenient));
    CHECK(lenient.passed);
  }
  SECTION("an order stored with other lines than acknowledged: fails") {
    auto changed = acks;
    changed.front().lines.front().second += 1;
    auto v = accounting::verify(pg_url(), before, changed, {who.id}, 0);
    INFO(failures(v));
    CHECK_FALSE(v.passed);
    CHECK(mentions(v, changed.front().order_id));
  }
  SECTION("stock gone without an order: fails") {
    pqxx::connection conn{pg_url()};
    {
      pqxx::work tx{conn};
      tx.exec_params("UPDATE products SET stock = stock - 1 WHERE id = $1", product);
      tx.commit();
    }
    auto v = accounting::verify(pg_url(), before, acks, {who.id}, 0);
    INFO(failures(v));
    CHECK_FALSE(v.passed);
    CHECK(v.products_mismatched == 1);
    CHECK(mentions(v, product));
  }
}
