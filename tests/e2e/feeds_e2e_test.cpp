// End-to-end: the real-time feeds over both transports (WebSocket GET /ws, Server-Sent Events
// GET /products/{id}/events and /orders/{id}/events), through the real `emporium serve` binary
// against the test PostgreSQL and Redis: acknowledgement before events, the exact event of a
// change made through the API, resuming with `after` and Last-Event-ID, someone else's order,
// the limits (subscriptions per connection, connections per address), a reader that stops
// reading, and the server's shutdown. Clients: e2e/feed_client.hpp.

#include "e2e/commerce_support.hpp"
#include "e2e/feed_client.hpp"
#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using namespace emporium::test::shop;
using namespace std::chrono_literals;
using json = nlohmann::json;

constexpr int max_subscriptions = 3;
constexpr int max_per_address = 6;

env_map feed_env(env_map extra = {}) {
  env_map env{
    {"EMPORIUM_FEEDS_MAX_SUBSCRIPTIONS_PER_CONNECTION", std::to_string(max_subscriptions)},
    {"EMPORIUM_FEEDS_MAX_CONNECTIONS_PER_ADDRESS", std::to_string(max_per_address)},
    // Room for a burst (the hub hands on a page of the outbox at once), little enough that a
    // reader that stopped fills it soon.
    {"EMPORIUM_FEEDS_SEND_QUEUE_MAX", "512"},
    // A reader that stops reading answers no ping either: give it time.
    {"EMPORIUM_FEEDS_PING_S", "60"}};
  for (auto& [k, v] : extra)
    env[k] = v;
  return commerce_env(env);
}

server_process& feed_server() {
  static server_process server{feed_env()};
  server.start();
  return server;
}

void set_stock(http_client& c, const std::string& product, std::int64_t stock) {
  auto r = c.request("PATCH", "/products/" + product, json{{"stock", stock}}.dump(), admin());
  INFO(show(r));
  REQUIRE(r.status == 200);
}

/// The value of an unlabelled family (or of `labels`, as written) in /metrics.
double metric(http_client& c, const std::string& name, const std::string& labels = "") {
  auto text = c.get("/metrics").body;
  std::istringstream in{text};
  std::string line;
  const std::string key = name + labels + " ";
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0)
      return std::stod(line.substr(key.size()));
  return -1;
}

/// The expected stock_changed data of a change.
json stock_data(const std::string& product, std::int64_t stock) {
  return {{"product_id", product}, {"stock", stock}};
}

/// Checks a WebSocket event message against the contract, exactly.
void check_ws_event(const std::string& text, const std::string& topic, std::int64_t seq,
                    const std::string& type, const json& data) {
  INFO(text);
  auto prefix = R"({"topic":")" + topic + R"(","seq":)" + std::to_string(seq) + R"(,"type":")"
                + type + R"(","data":)";
  REQUIRE(text.rfind(prefix, 0) == 0);
  REQUIRE(text.back() == '}');
  CHECK(json::parse(text.substr(prefix.size(), text.size() - prefix.size() - 1)) == data);
}

std::string bearer(const shopper& s) {
  return "Bearer " + s.token;
}

} // namespace

TEST_CASE(
  "feeds: a WebSocket subscription is acknowledged, gets a stock change made through the "
  "API as the exact event, and ends with unsubscribe",
  "[e2e][feeds]") {
  auto& srv = feed_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10});
  const auto topic = "product:" + product;

  ws_client ws{srv.host(), srv.port()};
  auto seq = ws.subscribe(topic);
  CHECK(seq >= 0);
  set_stock(c, product, 7);
  auto text = ws.next_text(10s);
  REQUIRE(text);
  check_ws_event(*text, topic, seq + 1, "stock_changed", stock_data(product, 7));
  set_stock(c, product, 6);
  text = ws.next_text(10s);
  REQUIRE(text);
  check_ws_event(*text, topic, seq + 2, "stock_changed", stock_data(product, 6));

  ws.send(json{{"unsubscribe", topic}});
  CHECK(ws.next() == json{{"type", "unsubscribed"}, {"topic", topic}});
  set_stock(c, product, 5);
  CHECK_FALSE(ws.next_text(1500ms)); // nothing after unsubscribing
  // Subscribing again starts at the current seq.
  CHECK(ws.subscribe(topic) == seq + 3);
}

TEST_CASE("feeds: an event stream starts with its preamble and carries the exact event",
          "[e2e][feeds]") {
  auto& srv = feed_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10});
  const auto topic = "product:" + product;

  sse_client sse{srv.host(), srv.port(), "/products/" + product + "/events"};
  REQUIRE(sse.status() == 200);
  CHECK(sse.header("Content-Type") == "text/event-stream");
  CHECK(sse.header("Cache-Control") == "no-store");
  CHECK(sse.header("Content-Length").empty());
  auto first = sse.next_block();
  REQUIRE(first);
  CHECK(first->retry == 2000);
  REQUIRE(first->comments.size() == 1);
  const std::string prefix = "subscribed " + topic + " seq ";
  REQUIRE(first->comments[0].rfind(prefix, 0) == 0);
  auto seq = std::stoll(first->comments[0].substr(prefix.size()));
  CHECK(sse.received().rfind(
          "retry: 2000\n: subscribed " + topic + " seq " + std::to_string(seq) + "\n\n", 0)
        == 0);

  set_stock(c, product, 4);
  auto e = sse.next_event();
  CHECK(e.id == seq + 1);
  CHECK(e.type == "stock_changed");
  CHECK(json::parse(e.data) == stock_data(product, 4));
  CHECK(e.raw
        == "id: " + std::to_string(seq + 1) + "\nevent: stock_changed\ndata: " + e.data + "\n\n");
}

TEST_CASE("feeds: resuming with after and with Last-Event-ID gets exactly the missed events",
          "[e2e][feeds]") {
  auto& srv = feed_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {100});
  const auto topic = "product:" + product;

  std::int64_t seen = 0;
  {
    ws_client ws{srv.host(), srv.port()};
    seen = ws.subscribe(topic);
    set_stock(c, product, 90);
    check_ws_event(*ws.next_text(), topic, seen + 1, "stock_changed", stock_data(product, 90));
    seen += 1;
  } // the client goes away
  set_stock(c, product, 80);
  set_stock(c, product, 70);
  set_stock(c, product, 60);

  SECTION("WebSocket, after") {
    ws_client ws{srv.host(), srv.port()};
    CHECK(ws.subscribe(topic, seen) == seen + 3);
    std::int64_t stock = 80;
    for (std::int64_t s = seen + 1; s <= seen + 3; ++s, stock -= 10)
      check_ws_event(*ws.next_text(), topic, s, "stock_changed", stock_data(product, stock));
    set_stock(c, product, 50);
    check_ws_event(*ws.next_text(), topic, seen + 4, "stock_changed", stock_data(product, 50));
    CHECK_FALSE(ws.next_text(1s)); // no seq twice
  }
  SECTION("event stream, Last-Event-ID and ?after=") {
    sse_client by_header{srv.host(),
                         srv.port(),
                         "/products/" + product + "/events",
                         {{"Last-Event-ID", std::to_string(seen + 1)}}};
    REQUIRE(by_header.status() == 200);
    sse_client by_query{srv.host(), srv.port(),
                        "/products/" + product + "/events?after=" + std::to_string(seen)};
    REQUIRE(by_query.status() == 200);
    for (auto* s : {&by_header, &by_query}) {
      auto first = s->next_block();
      REQUIRE(first);
      REQUIRE(first->comments.size() == 1);
      CHECK(first->comments[0] == "subscribed " + topic + " seq " + std::to_string(seen + 3));
    }
    CHECK(by_header.next_event().id == seen + 2);
    CHECK(by_header.next_event().id == seen + 3);
    for (std::int64_t s = seen + 1; s <= seen + 3; ++s)
      CHECK(by_query.next_event().id == s);
    set_stock(c, product, 40);
    CHECK(by_header.next_event().id == seen + 4);
    CHECK(by_query.next_event().id == seen + 4);
    CHECK_FALSE(by_header.next_block(1s));
  }
  SECTION("a resume point that is not a seq is 400") {
    sse_client bad{
      srv.host(), srv.port(), "/products/" + product + "/events", {{"Last-Event-ID", "-3"}}};
    CHECK(bad.status() == 400);
    CHECK(json::parse(bad.body())["status"] == 400);
    ws_client ws{srv.host(), srv.port()};
    ws.send(json{{"subscribe", topic}, {"after", seen + 100}}); // beyond the current seq
    auto m = ws.next();
    CHECK(m["type"] == "error");
    CHECK(m["status"] == 400);
    CHECK(m["topic"] == topic);
  }
}

TEST_CASE(
  "feeds: order events go to the owner and the admin, someone else's order is 404 over "
  "both transports, and 401 without a token over SSE",
  "[e2e][feeds]") {
  auto& srv = feed_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10});
  auto owner = new_shopper(c);
  auto other = new_shopper(c);
  auto placed = c.request("POST", "/orders", order_body({{product, 1}}).dump(), owner.auth());
  INFO(show(placed));
  REQUIRE(placed.status == 201);
  auto order = placed.json().at("id").get<std::string>();
  const auto topic = "order:" + order;
  const auto path = "/orders/" + order + "/events";

  // Someone else: 404, as GET /orders/{id} answers them.
  {
    ws_client ws{srv.host(), srv.port(), "/ws", {{"Authorization", bearer(other)}}};
    ws.send(json{{"subscribe", topic}});
    auto m = ws.next();
    CHECK(m == json{{"type", "error"}, {"topic", topic}, {"status", 404}, {"detail", m["detail"]}});
    // Anonymous likewise.
    ws_client anon{srv.host(), srv.port()};
    anon.send(json{{"subscribe", topic}});
    CHECK(anon.next()["status"] == 404);
  }
  {
    sse_client sse{srv.host(), srv.port(), path, {{"Authorization", bearer(other)}}};
    CHECK(sse.status() == 404);
    CHECK(sse.header("Content-Type").rfind("application/problem+json", 0) == 0);
    sse_client none{srv.host(), srv.port(), path};
    CHECK(none.status() == 401);
  }
  // An unknown token refuses the upgrade itself.
  CHECK_THROWS_MATCHES(
    ws_client(srv.host(), srv.port(), "/ws?access_token=nonsense"), upgrade_refused,
    Catch::Predicate<upgrade_refused>([](const auto& e) { return e.status == 401; }));

  // The owner (its token as ?access_token=, as a browser sends it) and the admin.
  ws_client mine{srv.host(), srv.port(), "/ws?access_token=" + owner.token};
  auto seq = mine.subscribe(topic);
  sse_client admin_stream{srv.host(), srv.port(), path, {{"Authorization", admin_bearer()}}};
  REQUIRE(admin_stream.status() == 200);
  auto paid = c.request("POST", "/orders/" + order + "/payments",
                        json{{"payment_method", "tok_visa"}}.dump(), owner.auth());
  INFO(show(paid));
  REQUIRE(paid.status == 200);
  auto text = mine.next_text();
  REQUIRE(text);
  check_ws_event(*text, topic, seq + 1, "order_status",
                 json{{"order_id", order}, {"status", "paid"}});
  auto e = admin_stream.next_event();
  CHECK(e.id == seq + 1);
  CHECK(e.type == "order_status");
  CHECK(json::parse(e.data)["status"] == "paid");
}

TEST_CASE("feeds: a feed opened with a customer's token ends when its session expires",
          "[e2e][feeds][auth]") {
  // Otherwise it would go on carrying that customer's order events for as long as it stays
  // open, and take new subscriptions to them, with a token that no request would accept.
  server_process srv{feed_env({{"EMPORIUM_AUTH_SESSION_TTL_S", "4"}})};
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10});
  auto owner = new_shopper(c); // its session expires 4 s from now
  auto placed = c.request("POST", "/orders", order_body({{product, 1}}).dump(), owner.auth());
  REQUIRE(placed.status == 201);
  auto order = placed.json().at("id").get<std::string>();
  auto t0 = std::chrono::steady_clock::now();
  ws_client ws{srv.host(), srv.port(), "/ws", {{"Authorization", bearer(owner)}}};
  ws.subscribe("order:" + order);
  sse_client sse{
    srv.host(), srv.port(), "/orders/" + order + "/events", {{"Authorization", bearer(owner)}}};
  REQUIRE(sse.status() == 200);
  CHECK(ws.wait_close(10s) == 1008);
  CHECK(sse.wait_end(10s));
  auto after = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(after < 8.0);
  // The token is refused now, as by any request.
  CHECK(c.get("/orders/" + order, owner.auth()).status == 401);
}

TEST_CASE("feeds: a malformed WebSocket message is answered 400 and the connection stays",
          "[e2e][feeds]") {
  auto& srv = feed_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10});
  ws_client ws{srv.host(), srv.port()};
  for (const char* bad : {"not json", "[1]", R"({"subscribe":"product:x","extra":true})",
                          R"({"subscribe":"shelf:1"})", R"({"subscribe":"product:x","after":-1})",
                          R"({"subscribe":"product:x","after":2.5})", R"({"unsubscribe":7})"}) {
    INFO(bad);
    ws.send(std::string{bad});
    auto m = ws.next();
    CHECK(m["type"] == "error");
    CHECK(m["status"] == 400);
    CHECK(m["detail"].is_string());
  }
  // A malformed id and an unknown product: 404.
  ws.send(json{{"subscribe", "product:nonsense"}});
  CHECK(ws.next()["status"] == 404);
  ws.send(json{{"subscribe", "product:prod_01ARZ3NDEKTSV4RRFFQ69G5FAV"}});
  CHECK(ws.next()["status"] == 404);
  // Still serving.
  CHECK(ws.subscribe("product:" + product) >= 0);
  // A GET /ws that is no upgrade is an ordinary 400.
  auto plain = c.get("/ws");
  CHECK(plain.status == 400);
}

TEST_CASE("feeds: each WebSocket subscribe takes a token of the client's read bucket",
          "[e2e][feeds][limits]") {
  // A subscription reads its topic's head on the database pool: without the limiter, one
  // connection could ask for reads without end (subscribe, 404, subscribe again).
  env_map env{{"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "10"},
              {"EMPORIUM_RATE_LIMIT_READ_REFILL_PER_S", "0.01"},
              {"EMPORIUM_HTTP_TRUSTED_PROXIES", "127.0.0.1"}};
  SECTION("local buckets") {}
  SECTION("buckets in Redis: the limiter decides on its own thread") {
    env["EMPORIUM_RATE_LIMIT_MODE"] = "redis";
    env["EMPORIUM_RATE_LIMIT_REDIS_TIMEOUT_MS"] = "2000";
  }
  server_process srv{env};
  // A client address of its own: its bucket starts full, in Redis too.
  std::mt19937_64 rng{std::random_device{}()};
  char address[64];
  std::snprintf(address, sizeof address, "2001:db8::%x:%x", static_cast<unsigned>(rng() & 0xffff),
                static_cast<unsigned>(rng() & 0xffff));
  const header_map from{{"X-Forwarded-For", address}};
  ws_client ws{srv.host(), srv.port(), "/ws", from}; // the upgrade took one token
  int not_found = 0;
  int limited = 0;
  for (int i = 0; i < 30; ++i) {
    ws.send(json{{"subscribe", "product:prod_01ARZ3NDEKTSV4RRFFQ69G5FAV"}});
    auto m = ws.next();
    REQUIRE(m["type"] == "error");
    if (m["status"] == 404)
      ++not_found;
    else if (m["status"] == 429) {
      ++limited;
      CHECK(m["detail"].get<std::string>().find("retry after") != std::string::npos);
    }
  }
  CHECK(not_found == 9);
  CHECK(limited == 21);
  // The connection stays; unsubscribing costs nothing.
  ws.send(json{{"unsubscribe", "product:prod_01ARZ3NDEKTSV4RRFFQ69G5FAV"}});
  CHECK(ws.next()["type"] == "unsubscribed");
  // And the bucket is the client's: an HTTP read from it is refused too.
  http_client c{srv.host(), srv.port()};
  CHECK(c.request("GET", "/products?limit=1", "", from).status == 429);
}

TEST_CASE("feeds: subscriptions per connection are limited (429) and freed by unsubscribing",
          "[e2e][feeds]") {
  auto& srv = feed_server();
  http_client c{srv.host(), srv.port(), 30s};
  std::vector<std::string> products;
  for (int i = 0; i <= max_subscriptions; ++i)
    products.push_back(create_product(c, {10}));
  ws_client ws{srv.host(), srv.port()};
  for (int i = 0; i < max_subscriptions; ++i)
    ws.subscribe("product:" + products[static_cast<std::size_t>(i)]);
  const auto extra = "product:" + products.back();
  ws.send(json{{"subscribe", extra}});
  auto m = ws.next();
  CHECK(m["type"] == "error");
  CHECK(m["status"] == 429);
  CHECK(m["topic"] == extra);
  ws.send(json{{"unsubscribe", "product:" + products[0]}});
  CHECK(ws.next()["type"] == "unsubscribed");
  CHECK(ws.subscribe(extra) >= 0);
}

TEST_CASE(
  "feeds: feed connections per address are limited: the upgrade or the stream is "
  "refused with 429",
  "[e2e][feeds]") {
  auto& srv = feed_server();
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10});
  const auto path = "/products/" + product + "/events";
  std::vector<std::unique_ptr<ws_client>> sockets;
  std::vector<std::unique_ptr<sse_client>> streams;
  for (int i = 0; i < max_per_address / 2; ++i) {
    sockets.push_back(std::make_unique<ws_client>(srv.host(), srv.port()));
    streams.push_back(std::make_unique<sse_client>(srv.host(), srv.port(), path));
    REQUIRE(streams.back()->status() == 200);
  }
  try {
    ws_client refused{srv.host(), srv.port()};
    FAIL("the upgrade was accepted");
  } catch (const upgrade_refused& e) {
    CHECK(e.status == 429);
    CHECK(json::parse(e.body)["status"] == 429);
  }
  sse_client refused{srv.host(), srv.port(), path};
  CHECK(refused.status() == 429);
  CHECK(refused.header("Content-Type").rfind("application/problem+json", 0) == 0);
  // Ordinary requests are not feed connections.
  CHECK(c.get("/products/" + product).status == 200);

  // One goes: there is room again (once the server has seen it go).
  sockets.front()->close();
  sockets.erase(sockets.begin());
  bool admitted = false;
  for (int i = 0; i < 50 && !admitted; ++i) {
    try {
      ws_client again{srv.host(), srv.port()};
      admitted = true;
    } catch (const upgrade_refused&) {
      std::this_thread::sleep_for(100ms);
    }
  }
  CHECK(admitted);
}

TEST_CASE(
  "feeds: an event stream that stops being read ends while another subscriber of the "
  "same topics gets every event",
  "[e2e][feeds]") {
  auto& srv = feed_server();
  http_client c{srv.host(), srv.port(), 30s};
  std::vector<std::string> products;
  for (int i = 0; i < max_subscriptions; ++i)
    products.push_back(create_product(c, {1'000'000}));

  ws_client fast{srv.host(), srv.port()};
  std::map<std::string, std::int64_t> start;
  for (const auto& p : products) {
    start["product:" + p] = fast.subscribe("product:" + p);
  }
  sse_client slow_stream{srv.host(), srv.port(), "/products/" + products[0] + "/events", {}, 4096};
  REQUIRE(slow_stream.status() == 200);
  const auto dropped_before = metric(c, "emporium_feed_dropped_total");

  // Changes in rounds, three products at once, until both slow readers were dropped; the fast
  // one reads everything meanwhile (on this thread, between rounds).
  std::map<std::string, std::int64_t> last = start;
  std::map<std::string, std::int64_t> changes;
  auto read_fast = [&](std::chrono::milliseconds wait) {
    while (auto t = fast.next_text(wait)) {
      auto m = json::parse(*t);
      auto topic = m.at("topic").get<std::string>();
      INFO(*t);
      REQUIRE(m.at("seq").get<std::int64_t>() == last[topic] + 1); // every event, in order
      last[topic] += 1;
    }
  };
  bool dropped = false;
  for (int round = 0; round < 60 && !dropped; ++round) {
    std::vector<std::thread> writers;
    std::vector<int> made(products.size(), 0);
    std::vector<std::string> refusals(products.size());
    for (std::size_t i = 0; i < products.size(); ++i)
      writers.emplace_back([&, i] {
        http_client w{srv.host(), srv.port(), 30s};
        for (int k = 0; k < 40; ++k) {
          auto r = w.request("PATCH", "/products/" + products[i],
                             json{{"stock", 500'000 + round * 100 + k}}.dump(), admin());
          if (r.status == 200)
            ++made[i];
          else
            refusals[i] = show(r);
        }
      });
    for (auto& t : writers)
      t.join();
    for (std::size_t i = 0; i < products.size(); ++i) {
      changes["product:" + products[i]] += made[i];
      if (!refusals[i].empty())
        std::cerr << "[measure] a change was refused: " << refusals[i] << "\n";
    }
    read_fast(200ms);
    const auto sse_open = metric(c, "emporium_feed_connections", R"({transport="sse"})");
    const auto dropped_now = metric(c, "emporium_feed_dropped_total");
    dropped = sse_open == 0 && dropped_now >= dropped_before + 1;
    if (round % 10 == 9 || dropped)
      std::cerr << "[measure] slow readers: round " << round + 1 << ", event streams open "
                << sse_open << ", subscriptions dropped " << dropped_now - dropped_before << "\n";
  }
  REQUIRE(dropped);
  // The fast subscriber got every change.
  for (int i = 0; i < 100; ++i) {
    bool all = true;
    for (const auto& [topic, n] : changes)
      all = all && last[topic] == start[topic] + n;
    if (all)
      break;
    read_fast(100ms);
  }
  for (const auto& [topic, n] : changes) {
    INFO(topic << " (the fast client " << (fast.closed() ? "was closed, code " : "is open, code ")
               << fast.close_code() << ")");
    CHECK(last[topic] == start[topic] + n);
  }
  // The slow one: the end.
  CHECK(slow_stream.wait_end(30s));
}

TEST_CASE(
  "feeds: a WebSocket client that stops reading is closed with 1013 while another "
  "subscriber of the same topics gets every event",
  "[e2e][feeds]") {
  auto& srv = feed_server();
  http_client c{srv.host(), srv.port(), 30s};
  std::vector<std::string> products;
  for (int i = 0; i < max_subscriptions; ++i)
    products.push_back(create_product(c, {1'000'000}));

  ws_client fast{srv.host(), srv.port()};
  ws_client slow{srv.host(), srv.port(), "/ws", {}, 4096};
  std::map<std::string, std::int64_t> start;
  for (const auto& p : products) {
    start["product:" + p] = fast.subscribe("product:" + p);
    slow.subscribe("product:" + p);
  }
  sse_client slow_stream{srv.host(), srv.port(), "/products/" + products[0] + "/events", {}, 4096};
  REQUIRE(slow_stream.status() == 200);
  const auto dropped_before = metric(c, "emporium_feed_dropped_total");

  // Changes in rounds, three products at once, until both slow readers were dropped; the fast
  // one reads everything meanwhile (on this thread, between rounds).
  std::map<std::string, std::int64_t> last = start;
  std::map<std::string, std::int64_t> changes;
  auto read_fast = [&](std::chrono::milliseconds wait) {
    while (auto t = fast.next_text(wait)) {
      auto m = json::parse(*t);
      auto topic = m.at("topic").get<std::string>();
      INFO(*t);
      REQUIRE(m.at("seq").get<std::int64_t>() == last[topic] + 1); // every event, in order
      last[topic] += 1;
    }
  };
  bool dropped = false;
  for (int round = 0; round < 60 && !dropped; ++round) {
    std::vector<std::thread> writers;
    std::vector<int> made(products.size(), 0);
    std::vector<std::string> refusals(products.size());
    for (std::size_t i = 0; i < products.size(); ++i)
      writers.emplace_back([&, i] {
        http_client w{srv.host(), srv.port(), 30s};
        for (int k = 0; k < 40; ++k) {
          auto r = w.request("PATCH", "/products/" + products[i],
                             json{{"stock", 500'000 + round * 100 + k}}.dump(), admin());
          if (r.status == 200)
            ++made[i];
          else
            refusals[i] = show(r);
        }
      });
    for (auto& t : writers)
      t.join();
    for (std::size_t i = 0; i < products.size(); ++i) {
      changes["product:" + products[i]] += made[i];
      if (!refusals[i].empty())
        std::cerr << "[measure] a change was refused: " << refusals[i] << "\n";
    }
    read_fast(200ms);
    const auto sse_open = metric(c, "emporium_feed_connections", R"({transport="sse"})");
    const auto dropped_now = metric(c, "emporium_feed_dropped_total");
    dropped = sse_open == 0 && dropped_now >= dropped_before + 2;
    if (round % 10 == 9 || dropped)
      std::cerr << "[measure] slow readers: round " << round + 1 << ", event streams open "
                << sse_open << ", subscriptions dropped " << dropped_now - dropped_before << "\n";
  }
  REQUIRE(dropped);
  // The fast subscriber got every change.
  for (int i = 0; i < 100; ++i) {
    bool all = true;
    for (const auto& [topic, n] : changes)
      all = all && last[topic] == start[topic] + n;
    if (all)
      break;
    read_fast(100ms);
  }
  for (const auto& [topic, n] : changes) {
    INFO(topic << " (the fast client " << (fast.closed() ? "was closed, code " : "is open, code ")
               << fast.close_code() << ")");
    CHECK(last[topic] == start[topic] + n);
  }
  // The slow ones: what they had was in order, then the end.
  std::vector<std::string> seen;
  CHECK(slow.wait_close(30s, &seen) == 1013);
  CHECK_FALSE(seen.empty());
  CHECK(slow_stream.wait_end(30s));
}

TEST_CASE(
  "feeds: every feeds.ping_s an idle event stream gets a keep-alive comment, and a WebSocket "
  "whose client answers pings stays open while one that never reads is dropped",
  "[e2e][feeds]") {
  server_process srv{feed_env({{"EMPORIUM_FEEDS_PING_S", "1"}})};
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10});
  const auto topic = "product:" + product;

  sse_client sse{srv.host(), srv.port(), "/products/" + product + "/events"};
  REQUIRE(sse.status() == 200);
  REQUIRE(sse.next_block()); // the preamble
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    auto block = sse.next_block(3s);
    REQUIRE(block);
    CHECK(block->raw == ": keep-alive\n\n");
  }
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  CHECK(elapsed >= 1500ms); // one a second, not a burst
  CHECK(elapsed < 6s);

  // Beast's client answers the server's pings while it reads: the connection outlives twice
  // ping_s without a message either way, and is still subscribed.
  ws_client live{srv.host(), srv.port()};
  live.subscribe(topic);
  CHECK_FALSE(live.next_text(3500ms));
  REQUIRE_FALSE(live.closed());
  set_stock(c, product, 9);
  auto text = live.next_text(5s);
  REQUIRE(text);
  check_ws_event(*text, topic, 1, "stock_changed", stock_data(product, 9));

  // A client that never reads answers no ping: the server drops it after twice ping_s.
  ws_client mute{srv.host(), srv.port()};
  mute.subscribe(topic);
  std::this_thread::sleep_for(4s);
  CHECK(mute.wait_close(5s) != -1);
}

TEST_CASE("feeds: the server's shutdown closes WebSockets with 1001 and ends event streams",
          "[e2e][feeds]") {
  server_process srv{feed_env()};
  http_client c{srv.host(), srv.port(), 30s};
  auto product = create_product(c, {10});
  ws_client ws{srv.host(), srv.port()};
  ws.subscribe("product:" + product);
  sse_client sse{srv.host(), srv.port(), "/products/" + product + "/events"};
  REQUIRE(sse.status() == 200);
  std::thread stop{[&] { srv.send_signal(SIGTERM); }};
  stop.join();
  CHECK(ws.wait_close(20s) == 1001);
  CHECK(sse.wait_end(20s));
  CHECK(srv.wait_exit(20'000ms) == 0);
}
