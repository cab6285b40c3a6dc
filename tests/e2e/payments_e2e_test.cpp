// End-to-end: payments and the order state machine: paying, cancelling, shipping and delivering
// through HTTP, concurrent payments and cancellations, unpaid orders expiring. Through the real
// `emporium serve` binary against the test PostgreSQL and Redis; the commerce tests share one
// server (shop::commerce_server()). The database is shared: every product, customer and key here is
// new and unique, nothing assumes empty tables. Catch2 assertions are not thread-safe: worker
// threads only record what they saw; the checks run on the test's thread afterwards.

#include "core/ids.hpp"
#include "e2e/commerce_support.hpp"
#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using namespace emporium::test::shop;
using namespace std::chrono_literals;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

} // namespace

TEST_CASE("commerce: the order state machine through HTTP", "[e2e][commerce][orders]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {20, 2'500, 200});
  auto owner = new_shopper(c);
  auto other = new_shopper(c);
  db d;
  auto place = [&](int qty) {
    auto r = c.request("POST", "/orders", order_body({{product, qty}}).dump(), owner.auth());
    INFO(show(r));
    REQUIRE(r.status == 201);
    return r.json().at("id").get<std::string>();
  };
  auto act = [&](const std::string& id, const std::string& action, const header_map& who,
                 const std::string& method = "") {
    if (action == "payments")
      return c.request("POST", "/orders/" + id + "/payments",
                       json{{"payment_method", method}}.dump(), who);
    return c.request("POST", "/orders/" + id + "/" + action, "", who);
  };
  auto expect_conflicts = [&](const std::string& id, const std::string& status) {
    // Every action not allowed from `status` answers 409 and changes nothing.
    std::vector<std::pair<std::string, header_map>> tries;
    if (status != "pending_payment") {
      tries.push_back({"payments", owner.auth()});
      tries.push_back({"cancel", owner.auth()});
    }
    if (status != "pending_payment" && status != "paid")
      tries.push_back({"cancel", admin()});
    if (status != "paid")
      tries.push_back({"ship", admin()});
    if (status != "shipped")
      tries.push_back({"deliver", admin()});
    for (const auto& [action, who] : tries) {
      INFO("from " << status << ": " << action);
      auto r = act(id, action, who, "tok_visa");
      check_problem(r, 409);
      CHECK(d.status(id) == status);
    }
  };

  SECTION("pay, pay again, ship, deliver; owner and stranger cannot fulfil") {
    auto id = place(2);
    expect_conflicts(id, "pending_payment");
    auto paid = act(id, "payments", owner.auth(), "tok_visa");
    INFO(show(paid));
    REQUIRE(paid.status == 200);
    auto o = paid.json();
    CHECK(o.at("status") == "paid");
    REQUIRE(o.at("payment").is_object());
    CHECK(o["payment"].at("status") == "captured");
    CHECK(o["payment"].at("provider") == "simulated");
    CHECK_FALSE(o["payment"].at("reference").get<std::string>().empty());
    check_problem(act(id, "payments", owner.auth(), "tok_visa"), 409); // never charged twice
    CHECK(d.scalar("SELECT count(*) FROM payments WHERE order_id = $1", id) == 1);
    expect_conflicts(id, "paid");

    check_problem(act(id, "ship", owner.auth()), 403);
    check_problem(act(id, "ship", other.auth()), 404);
    auto shipped = act(id, "ship", admin());
    INFO(show(shipped));
    REQUIRE(shipped.status == 200);
    CHECK(shipped.json().at("status") == "shipped");
    expect_conflicts(id, "shipped");

    check_problem(act(id, "deliver", owner.auth()), 403);
    check_problem(act(id, "deliver", other.auth()), 404);
    auto delivered = act(id, "deliver", admin());
    INFO(show(delivered));
    REQUIRE(delivered.status == 200);
    CHECK(delivered.json().at("status") == "delivered");
    expect_conflicts(id, "delivered");
    CHECK(get_order(c, id, owner.auth()).at("status") == "delivered");
  }

  SECTION("a declined card is 402 and a flaky provider 502; the order stays unpaid") {
    auto id = place(1);
    auto declined = act(id, "payments", owner.auth(), "tok_declined");
    check_problem(declined, 402);
    CHECK(get_order(c, id, owner.auth()).at("status") == "pending_payment");
    auto flaky = act(id, "payments", owner.auth(), "tok_flaky");
    check_problem(flaky, 502);
    auto o = get_order(c, id, owner.auth());
    CHECK(o.at("status") == "pending_payment");
    CHECK(o.at("payment").is_null());
    CHECK(d.scalar("SELECT count(*) FROM payments WHERE order_id = $1", id) == 0);
    // It can still be paid afterwards.
    auto paid = act(id, "payments", owner.auth(), "tok_visa");
    INFO(show(paid));
    CHECK(paid.status == 200);
  }

  SECTION("the owner cancels an unpaid order: its stock comes back exactly once") {
    auto before = d.stock(product);
    auto id = place(3);
    CHECK(d.stock(product) == before - 3);
    check_problem(act(id, "cancel", other.auth()), 404);
    auto cancelled = act(id, "cancel", owner.auth());
    INFO(show(cancelled));
    REQUIRE(cancelled.status == 200);
    CHECK(cancelled.json().at("status") == "cancelled");
    CHECK(d.stock(product) == before);
    CHECK(api_stock(c, product) == before);
    expect_conflicts(id, "cancelled");
    CHECK(d.stock(product) == before); // the second cancel returned nothing
    CHECK(d.cancel_events(id) == 1);
  }

  SECTION("the owner cannot cancel a paid order; the admin can (refunded)") {
    auto before = d.stock(product);
    auto id = place(2);
    REQUIRE(act(id, "payments", owner.auth(), "tok_visa").status == 200);
    check_problem(act(id, "cancel", owner.auth()), 409);
    CHECK(d.status(id) == "paid");
    CHECK(d.stock(product) == before - 2);
    auto cancelled = act(id, "cancel", admin());
    INFO(show(cancelled));
    REQUIRE(cancelled.status == 200);
    auto o = cancelled.json();
    CHECK(o.at("status") == "cancelled");
    REQUIRE(o.at("payment").is_object());
    CHECK(o["payment"].at("status") == "refunded");
    CHECK(d.stock(product) == before);
    CHECK(api_stock(c, product) == before);
    expect_conflicts(id, "cancelled");
    CHECK(d.stock(product) == before);
  }

  SECTION("the admin cancels an unpaid order") {
    auto before = d.stock(product);
    auto id = place(1);
    auto cancelled = act(id, "cancel", admin());
    INFO(show(cancelled));
    REQUIRE(cancelled.status == 200);
    CHECK(cancelled.json().at("status") == "cancelled");
    CHECK(d.stock(product) == before);
  }
}

TEST_CASE(
  "commerce: concurrent payments and cancellations of one order: one wins, the others "
  "are 409",
  "[e2e][commerce][orders]") {
  auto& srv = commerce_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {20, 10'000, 100});
  auto buyer = new_shopper(c);
  db d;
  auto place = [&](int qty) {
    auto r = c.request("POST", "/orders", order_body({{product, qty}}).dump(), buyer.auth());
    INFO(show(r));
    REQUIRE(r.status == 201);
    return r.json().at("id").get<std::string>();
  };
  auto race = [&](const std::string& target, const std::string& body, const header_map& who) {
    constexpr int n = 10;
    auto answers = emporium::test::shop::race(
      srv, n, n, [&](http_client& cl, int) { return cl.request("POST", target, body, who); });
    int ok = 0;
    for (const auto& a : answers) {
      INFO(a.status << " " << a.body << a.error);
      REQUIRE(a.error.empty());
      REQUIRE((a.status == 200 || a.status == 409));
      ok += a.status == 200;
    }
    return ok;
  };

  auto paid = place(2);
  CHECK(
    race("/orders/" + paid + "/payments", json{{"payment_method", "tok_visa"}}.dump(), buyer.auth())
    == 1);
  CHECK(d.scalar("SELECT count(*) FROM payments WHERE order_id = $1", paid) == 1);
  CHECK(get_customer(c, buyer).at("loyalty").at("points") == 200); // credited once

  auto before = d.stock(product);
  auto cancelled = place(5);
  CHECK(d.stock(product) == before - 5);
  CHECK(race("/orders/" + cancelled + "/cancel", "", buyer.auth()) == 1);
  CHECK(d.stock(product) == before); // returned once
  CHECK(d.cancel_events(cancelled) == 1);
  CHECK(api_stock(c, product) == before);

  // The admin cancelling the paid order many times at once takes its points back once.
  CHECK(race("/orders/" + paid + "/cancel", "", admin()) == 1);
  CHECK(get_customer(c, buyer).at("loyalty").at("points") == 0);
  CHECK(d.stock(product) == before + 2);
}

TEST_CASE(
  "commerce: an unpaid order is cancelled after orders.payment_timeout_s and its stock "
  "returned, also across a restart",
  "[e2e][commerce][timeout]") {
  server_process srv{commerce_env({{"EMPORIUM_ORDERS_PAYMENT_TIMEOUT_S", "1"}})};
  http_client c{srv.host(), srv.port(), 30s};
  db d;
  auto product = create_product(c, {10, 900, 100});
  auto buyer = new_shopper(c);

  SECTION("while the server runs") {
    auto r = c.request("POST", "/orders", order_body({{product, 4}}).dump(), buyer.auth());
    INFO(show(r));
    REQUIRE(r.status == 201);
    auto id = r.json().at("id").get<std::string>();
    CHECK(d.stock(product) == 6);
    auto started = steady::now();
    auto status = wait_for_status(c, id, buyer.auth(), "cancelled", 10s);
    std::cerr
      << "[measure] payment timeout 1 s: cancelled after "
      << std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started).count()
      << " ms\n";
    REQUIRE(status == "cancelled");
    CHECK(d.stock(product) == 10);
    CHECK(api_stock(c, product) == 10);
    // A late payment finds it cancelled.
    check_problem(c.request("POST", "/orders/" + id + "/payments",
                            json{{"payment_method", "tok_visa"}}.dump(), buyer.auth()),
                  409);
    std::this_thread::sleep_for(1s); // further sweeps return nothing more
    CHECK(d.stock(product) == 10);
    CHECK(d.cancel_events(id) == 1);
  }

  SECTION("with a restart in between") {
    auto r = c.request("POST", "/orders", order_body({{product, 3}}).dump(), buyer.auth());
    INFO(show(r));
    REQUIRE(r.status == 201);
    auto id = r.json().at("id").get<std::string>();
    c.close();
    CHECK(srv.stop_term() == 0);
    std::this_thread::sleep_for(2s);
    srv.start();
    http_client c2{srv.host(), srv.port(), 30s};
    auto status = wait_for_status(c2, id, buyer.auth(), "cancelled", 10s);
    REQUIRE(status == "cancelled");
    CHECK(d.stock(product) == 10);
    CHECK(api_stock(c2, product) == 10);
    std::this_thread::sleep_for(1s);
    CHECK(d.stock(product) == 10);
    CHECK(d.cancel_events(id) == 1);
  }
}
