#pragma once
/// Request bodies and answer checks the commerce end-to-end tests share (orders, carts, limits),
/// and, in namespace `shop`, the server, shoppers, racing threads and database probes of the
/// commerce tests (customers, carts, orders, payments).

#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace emporium::test {

/// The admin's Authorization header.
header_map admin();

/// `h` with one more header.
header_map with(header_map h, const std::string& name, const std::string& value);

/// "status body", for failure messages.
std::string show(const http_response& r);

/// A shipping address any zone of the default rate table serves (in `country`).
nlohmann::json address(const std::string& country = "US");

/// An order of `lines` (product id, quantity) shipped to `address(country)`.
nlohmann::json order_body(const std::vector<std::pair<std::string, int>>& lines,
                          const std::string& country = "US");

/// A problem+json answer with `status`, `title` and `detail`; its body.
nlohmann::json check_problem(const http_response& r, int status);

/// Whether the problem's errors[] names `field`.
bool names_field(const nlohmann::json& problem, const std::string& field);

namespace shop {

// -- servers ------------------------------------------------------------------------------------

/// Many customers log in from 127.0.0.1 here: keep the login bucket out of the way. A few
/// customers place many unpaid orders (stock races, paging): keep the cap on open unpaid orders
/// out of the way too (order_limits_e2e_test.cpp tests it). `extra` is added last.
env_map commerce_env(env_map extra = {});

/// The server the commerce tests share (default settings but the login bucket), started on
/// first use.
server_process& commerce_server();

// -- HTTP helpers ---------------------------------------------------------------------------------

struct product_spec {
  std::int64_t stock = 10;
  std::int64_t price_cents = 1'000;
  std::int64_t weight_grams = 100;
  std::string currency = "USD";
};

/// POST /products as the admin, which must answer 201; the new product's id.
std::string create_product(http_client& c, product_spec spec = {});

struct shopper {
  std::string id;
  std::string email;
  std::string password;
  std::string token;
  header_map auth() const { return {{"Authorization", "Bearer " + token}}; }
};

/// Creates and logs in a customer, recording failures instead of asserting (thread-safe).
bool try_new_shopper(http_client& c, shopper& s, std::string& why);

/// Creates and logs in a customer, which must succeed.
shopper new_shopper(http_client& c);

/// Releases every waiting thread at once, so that their requests really race.
class start_gate {
 public:
  explicit start_gate(int n) : waiting_(n) {}
  void arrive_and_wait();

 private:
  std::mutex mtx_;
  std::condition_variable cv_;
  int waiting_;
};

/// Runs body(i) on `n` threads, each after its own setup(i) and a common start gate.
void in_parallel(int n, const std::function<void(int)>& setup,
                 const std::function<void(int)>& body);

/// `n` customers, made two at a time: the server hashes passwords (Argon2id, 64 MiB each) on
/// two workers, and more at once would only queue them towards the request deadline.
std::vector<shopper> new_shoppers(const server_process& srv, int n);

/// GET /orders/{id}, which must answer 200.
nlohmann::json get_order(http_client& c, const std::string& id, const header_map& who);

/// PUT /carts/{cart}/items/{product} with {"quantity": quantity}.
http_response put_cart_item(http_client& c, const std::string& cart, const std::string& product,
                            const nlohmann::json& quantity, const header_map& who);

/// POST /carts as `who`, which must answer 201; the new cart's id.
std::string new_cart(http_client& c, const shopper& who);

/// GET /carts/{cart}, which must answer 200.
nlohmann::json get_cart(http_client& c, const std::string& cart, const header_map& who);

/// The product's stock as GET /products/{id} shows it.
std::int64_t api_stock(http_client& c, const std::string& product_id);

/// GET /customers/{id} as that customer, which must answer 200.
nlohmann::json get_customer(http_client& c, const shopper& s);

/// Polls GET /orders/{id} until its status is `status` or `limit` passes; the last status.
std::string wait_for_status(http_client& c, const std::string& id, const header_map& who,
                            const std::string& status, std::chrono::milliseconds limit);

// -- PostgreSQL ---------------------------------------------------------------------------------

struct db {
  pqxx::connection conn{pg_url()};

  std::int64_t scalar(const std::string& sql, const std::string& arg) {
    pqxx::read_transaction tx{conn};
    auto r = tx.exec_params(sql, arg);
    return r.at(0)[0].is_null() ? 0 : r.at(0)[0].as<std::int64_t>();
  }

  std::int64_t scalar(const std::string& sql, const std::string& a, const std::string& b) {
    pqxx::read_transaction tx{conn};
    auto r = tx.exec_params(sql, a, b);
    return r.at(0)[0].is_null() ? 0 : r.at(0)[0].as<std::int64_t>();
  }

  std::int64_t stock(const std::string& product_id) {
    return scalar("SELECT stock FROM products WHERE id = $1", product_id);
  }

  /// Units of the product in orders that are not cancelled.
  std::int64_t ordered(const std::string& product_id) {
    return scalar(
      "SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders o "
      "ON o.id = l.order_id WHERE l.product_id = $1 AND o.status <> 'cancelled'",
      product_id);
  }

  std::int64_t orders_with(const std::string& product_id) {
    return scalar("SELECT count(DISTINCT order_id) FROM order_lines WHERE product_id = $1",
                  product_id);
  }

  std::int64_t orders_of(const std::string& customer_id) {
    return scalar("SELECT count(*) FROM orders WHERE customer_id = $1", customer_id);
  }

  std::string status(const std::string& order_id) {
    pqxx::read_transaction tx{conn};
    return tx.exec_params("SELECT status FROM orders WHERE id = $1", order_id)
      .at(0)[0]
      .as<std::string>();
  }

  /// (product id, quantity) of an order's lines.
  std::map<std::string, std::int64_t> lines(const std::string& order_id) {
    pqxx::read_transaction tx{conn};
    std::map<std::string, std::int64_t> out;
    for (const auto& r : tx.exec_params("SELECT product_id, quantity FROM order_lines "
                                        "WHERE order_id = $1",
                                        order_id))
      out[r[0].as<std::string>()] += r[1].as<std::int64_t>();
    return out;
  }

  std::int64_t cancel_events(const std::string& order_id) {
    return scalar(
      "SELECT count(*) FROM events WHERE entity = $1 "
      "AND payload->>'status' = 'cancelled'",
      "order:" + order_id);
  }
};

/// Records one answer of a racing request (no Catch2 in worker threads).
struct answer {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string location;
  std::string error; ///< transport failure (timeout, reset)
};

answer record(const http_response& r);

/// `requests` requests raced by `clients` threads at once, each thread with its own keep-alive
/// connection opened before the start (a failed connect is recorded by its first request):
/// request k is sent by thread k % clients, as `send(client, k)` makes it. Every answer, or its
/// transport failure, in request order.
std::vector<answer> race(const server_process& srv, int clients, int requests,
                         const std::function<http_response(http_client&, int)>& send);

} // namespace shop

} // namespace emporium::test
