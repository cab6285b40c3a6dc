// End-to-end: the payment sweeper (actors/commerce_actors.cpp payment_sweeper) cancels unpaid
// orders past orders.payment_timeout_s. It reads at most 500 overdue orders per sweep: more than
// that are all cancelled by the sweeps that follow, each returning its stock exactly once. A
// sweep whose query fails (here: a column it reads renamed away for a while) is followed by more
// sweeps, which cancel the order once the query works again.

#include "e2e/commerce_support.hpp"
#include "gateway/gateway_support.hpp"
#include "support/eventually.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

std::int64_t scalar(const std::string& sql, const std::string& arg) {
  pqxx::connection conn{pg_url()};
  pqxx::read_transaction tx{conn};
  auto r = tx.exec_params(sql, arg);
  return r.at(0)[0].is_null() ? 0 : r.at(0)[0].as<std::int64_t>();
}

std::int64_t stock_of(const std::string& product) {
  return scalar("SELECT stock FROM products WHERE id = $1", product);
}

std::int64_t unpaid_of(const std::string& customer) {
  return scalar(
    "SELECT count(*) FROM orders WHERE customer_id = $1 "
    "AND status = 'pending_payment'",
    customer);
}

std::int64_t cancelled_of(const std::string& customer) {
  return scalar("SELECT count(*) FROM orders WHERE customer_id = $1 AND status = 'cancelled'",
                customer);
}

std::string create_product(http_client& c, std::int64_t stock) {
  json body{{"sku", unique("sweep-sku")}, {"name", "Sweeper widget"}, {"price_cents", 500},
            {"currency", "USD"},          {"stock", stock},           {"weight_grams", 100}};
  auto r = c.request("POST", "/products", body.dump(), admin());
  INFO(show(r));
  REQUIRE(r.status == 201);
  return r.json().at("id").get<std::string>();
}

/// Renames a column of the shared database for the lifetime of this object.
class column_renamed {
 public:
  column_renamed(std::string table, std::string from, std::string to)
    : table_(std::move(table)), from_(std::move(from)), to_(std::move(to)) {
    rename(from_, to_);
  }
  ~column_renamed() {
    try {
      rename(to_, from_);
    } catch (const std::exception& e) {
      FAIL_CHECK("could not restore column " << table_ << "." << from_ << ": " << e.what());
    }
  }
  column_renamed(const column_renamed&) = delete;
  column_renamed& operator=(const column_renamed&) = delete;

 private:
  void rename(const std::string& a, const std::string& b) {
    pqxx::connection conn{pg_url()};
    pqxx::work tx{conn};
    tx.exec0("ALTER TABLE " + table_ + " RENAME COLUMN " + a + " TO " + b);
    tx.commit();
  }
  std::string table_, from_, to_;
};

} // namespace

TEST_CASE(
  "sweeper: more overdue orders than one sweep reads are all cancelled, and each "
  "returns its stock exactly once",
  "[e2e][sweeper]") {
  const int orders = 520; // one sweep reads 500
  const std::int64_t stock = orders + 30;
  std::string product, customer;
  {
    // Placed with a long payment time, so that none expires while they are being placed.
    server_process placing{{{"EMPORIUM_ORDERS_PAYMENT_TIMEOUT_S", "3600"},
                            {"EMPORIUM_ORDERS_MAX_OPEN_UNPAID_PER_CUSTOMER", "1000"}}};
    http_client c{placing.host(), placing.port()};
    product = create_product(c, stock);
    auto who = new_customer(c);
    customer = who.id;
    std::atomic<int> placed{0}, failed{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t)
      clients.emplace_back([&, t] {
        http_client own{placing.host(), placing.port()};
        for (int i = t; i < orders; i += 4) {
          auto r = own.request("POST", "/orders", order_body({{product, 1}}).dump(),
                               bearer(who.tokens.at(0)));
          (r.status == 201 ? placed : failed)++;
        }
      });
    for (auto& t : clients)
      t.join();
    REQUIRE(placed == orders);
    REQUIRE(failed == 0);
    REQUIRE(placing.stop_term() == 0);
  }
  REQUIRE(stock_of(product) == stock - orders);
  {
    pqxx::connection conn{pg_url()};
    pqxx::work tx{conn};
    tx.exec_params(
      "UPDATE orders SET payment_due_at = now() - interval '1 minute' "
      "WHERE customer_id = $1",
      customer);
    tx.commit();
  }
  // A server that sweeps every 250 ms (orders.payment_timeout_s / 4).
  server_process sweeping{{{"EMPORIUM_ORDERS_PAYMENT_TIMEOUT_S", "1"}}};
  CHECK(eventually([&] { return unpaid_of(customer) == 0; }, 60s, 100ms));
  CHECK(cancelled_of(customer) == orders);
  CHECK(stock_of(product) == stock);
  // Later sweeps find nothing of them: the stock stays where it is.
  std::this_thread::sleep_for(1s);
  CHECK(stock_of(product) == stock);
  CHECK(cancelled_of(customer) == orders);
}

TEST_CASE("sweeper: a sweep that fails does not stop the sweeps after it", "[e2e][sweeper]") {
  server_process srv{{{"EMPORIUM_ORDERS_PAYMENT_TIMEOUT_S", "1"}}};
  http_client c{srv.host(), srv.port()};
  auto product = create_product(c, 5);
  auto who = new_customer(c);
  auto sweep_failures = [&srv] {
    int n = 0;
    for (const auto& line : json_log_lines(srv))
      if (line.value("msg", "").find("database job failed") != std::string::npos
          && line.value("msg", "").find("paying_since") != std::string::npos)
        ++n;
    return n;
  };
  {
    // Every sweep fails meanwhile: its query names a column that is gone. The column comes back
    // when the block ends, also when the test fails.
    column_renamed gone{"orders", "paying_since", "paying_since_hidden"};
    auto r = c.request("POST", "/orders", order_body({{product, 2}}).dump(), bearer(who.tokens[0]));
    INFO(show(r));
    REQUIRE(r.status == 201);
    REQUIRE(stock_of(product) == 3);
    // Failed sweeps, the last of them after the order's payment time (1 s) has passed.
    REQUIRE(eventually([&] { return sweep_failures() >= 2; }, 20s, 100ms));
    std::this_thread::sleep_for(1500ms);
    auto failed_before = sweep_failures();
    REQUIRE(eventually([&] { return sweep_failures() > failed_before; }, 20s, 100ms));
    CHECK(unpaid_of(who.id) == 1);
  }
  CHECK(eventually([&] { return unpaid_of(who.id) == 0; }, 20s));
  CHECK(cancelled_of(who.id) == 1);
  CHECK(stock_of(product) == 5);
}
