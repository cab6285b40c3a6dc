#include "e2e/commerce_support.hpp"

#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <exception>
#include <thread>

namespace emporium::test {

using json = nlohmann::json;

header_map admin() {
  return {{"Authorization", admin_bearer()}};
}

header_map with(header_map h, const std::string& name, const std::string& value) {
  h[name] = value;
  return h;
}

std::string show(const http_response& r) {
  return std::to_string(r.status) + " " + r.body;
}

json address(const std::string& country) {
  return json{{"name", "Ada Lovelace"},
              {"line1", "1 Analytical Way"},
              {"city", "Springfield"},
              {"postal_code", "12345"},
              {"country", country}};
}

json order_body(const std::vector<std::pair<std::string, int>>& lines, const std::string& country) {
  json items = json::array();
  for (const auto& [id, qty] : lines)
    items.push_back({{"product_id", id}, {"quantity", qty}});
  return json{{"items", items}, {"shipping_address", address(country)}};
}

json check_problem(const http_response& r, int status) {
  INFO("answer: " << show(r));
  REQUIRE(r.status == status);
  CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
  auto j = json::parse(r.body, nullptr, false);
  REQUIRE(j.is_object());
  CHECK(j.value("status", json()) == status);
  CHECK(j.value("title", json()).is_string());
  CHECK(j.value("detail", json()).is_string());
  return j;
}

bool names_field(const json& problem, const std::string& field) {
  for (const auto& e : problem.value("errors", json::array()))
    if (e.value("field", "") == field)
      return true;
  return false;
}

namespace shop {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

env_map commerce_env(env_map extra) {
  env_map env{{"EMPORIUM_RATE_LIMIT_LOGIN_CAPACITY", "1000000"},
              {"EMPORIUM_RATE_LIMIT_LOGIN_REFILL_PER_S", "1000000"},
              {"EMPORIUM_ORDERS_MAX_OPEN_UNPAID_PER_CUSTOMER", "10000"}};
  for (auto& [k, v] : extra)
    env[k] = v;
  return env;
}

server_process& commerce_server() {
  static server_process server{commerce_env()};
  server.start();
  return server;
}

std::string create_product(http_client& c, product_spec spec) {
  json body{
    {"sku", unique("com-sku")},  {"name", "Commerce widget"}, {"price_cents", spec.price_cents},
    {"currency", spec.currency}, {"stock", spec.stock},       {"weight_grams", spec.weight_grams}};
  auto r = c.request("POST", "/products", body.dump(), admin());
  INFO("POST /products -> " << show(r));
  REQUIRE(r.status == 201);
  return r.json().at("id").get<std::string>();
}

std::string new_cart(http_client& c, const shopper& who) {
  auto r = c.request("POST", "/carts", "", who.auth());
  INFO("POST /carts -> " << show(r));
  REQUIRE(r.status == 201);
  return r.json().at("id").get<std::string>();
}

bool try_new_shopper(http_client& c, shopper& s, std::string& why) {
  s.email = unique("buyer") + "@example.com";
  s.password = "pw-" + unique("secret");
  auto r = c.request("POST", "/customers",
                     json{{"email", s.email}, {"name", "Buyer"}, {"password", s.password}}.dump());
  if (r.status != 201) {
    why = "POST /customers -> " + show(r);
    return false;
  }
  s.id = r.json().at("id").get<std::string>();
  auto l = c.request("POST", "/sessions",
                     json{{"email", s.email}, {"password", s.password}}.dump());
  if (l.status != 200) {
    why = "POST /sessions -> " + show(l);
    return false;
  }
  s.token = l.json().at("token").get<std::string>();
  return true;
}

shopper new_shopper(http_client& c) {
  shopper s;
  std::string why;
  bool ok = try_new_shopper(c, s, why);
  INFO(why);
  REQUIRE(ok);
  return s;
}

void start_gate::arrive_and_wait() {
  std::unique_lock<std::mutex> lock{mtx_};
  if (--waiting_ == 0) {
    cv_.notify_all();
    return;
  }
  cv_.wait(lock, [this] { return waiting_ == 0; });
}

void in_parallel(int n, const std::function<void(int)>& setup,
                 const std::function<void(int)>& body) {
  start_gate gate{n};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      setup(i);
      gate.arrive_and_wait();
      body(i);
    });
  for (auto& t : threads)
    t.join();
}

std::vector<answer> race(const server_process& srv, int clients, int requests,
                         const std::function<http_response(http_client&, int)>& send) {
  std::vector<answer> answers(requests);
  std::vector<std::unique_ptr<http_client>> connections(clients);
  in_parallel(
    clients,
    [&](int t) {
      connections[t] = std::make_unique<http_client>(srv.host(), srv.port(), 30s);
      try {
        connections[t]->connect();
      } catch (const std::exception&) {
        // recorded by the first request below
      }
    },
    [&](int t) {
      for (int k = t; k < requests; k += clients) {
        try {
          answers[k] = record(send(*connections[t], k));
        } catch (const std::exception& e) {
          answers[k].error = e.what();
        }
      }
    });
  return answers;
}

std::vector<shopper> new_shoppers(const server_process& srv, int n) {
  std::vector<shopper> out(n);
  std::vector<std::string> errors(n);
  std::vector<char> ok(n, 0);
  constexpr int lanes = 2;
  in_parallel(
    lanes, [](int) {},
    [&](int lane) {
      http_client c{srv.host(), srv.port(), 30s};
      for (int i = lane; i < n; i += lanes) {
        try {
          ok[i] = try_new_shopper(c, out[i], errors[i]);
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      }
    });
  for (int i = 0; i < n; ++i) {
    INFO("shopper " << i << ": " << errors[i]);
    REQUIRE(ok[i]);
  }
  return out;
}

json get_order(http_client& c, const std::string& id, const header_map& who) {
  auto r = c.get("/orders/" + id, who);
  INFO("GET /orders/" << id << " -> " << show(r));
  REQUIRE(r.status == 200);
  return r.json();
}

http_response put_cart_item(http_client& c, const std::string& cart, const std::string& product,
                            const json& quantity, const header_map& who) {
  return c.request("PUT", "/carts/" + cart + "/items/" + product,
                   json{{"quantity", quantity}}.dump(), who);
}

json get_cart(http_client& c, const std::string& cart, const header_map& who) {
  auto r = c.get("/carts/" + cart, who);
  INFO("GET /carts/" << cart << " -> " << show(r));
  REQUIRE(r.status == 200);
  return r.json();
}

std::int64_t api_stock(http_client& c, const std::string& product_id) {
  auto r = c.get("/products/" + product_id);
  INFO(show(r));
  REQUIRE(r.status == 200);
  return r.json().at("stock").get<std::int64_t>();
}

json get_customer(http_client& c, const shopper& s) {
  auto r = c.get("/customers/" + s.id, s.auth());
  INFO(show(r));
  REQUIRE(r.status == 200);
  return r.json();
}

std::string wait_for_status(http_client& c, const std::string& id, const header_map& who,
                            const std::string& status, std::chrono::milliseconds limit) {
  auto deadline = steady::now() + limit;
  std::string last;
  for (;;) {
    auto r = c.get("/orders/" + id, who);
    if (r.status == 200)
      last = r.json().value("status", "");
    if (last == status || steady::now() >= deadline)
      return last;
    std::this_thread::sleep_for(100ms);
  }
}

answer record(const http_response& r) {
  return answer{r.status, r.body, r.header("content-type"), r.header("location"), {}};
}

} // namespace shop

} // namespace emporium::test
