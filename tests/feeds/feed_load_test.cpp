// The real-time feeds under load, on one real `emporium serve` against the test PostgreSQL and
// Redis: what a subscriber gets while several customers order and cancel the same product is
// every stock change, in order, with no gap, each exactly once (checked against the outbox, the
// `events` table the changes commit with), also across a reconnect that resumes with `after`
// (WebSocket) or Last-Event-ID (SSE); and a subscriber that stops reading is dropped without
// costing the writers or the other subscribers anything. Bounds are the configured deadlines,
// never a speed. Catch2 assertions are not thread-safe: the load and the subscribers' threads
// only record; the checks run afterwards.

#include "feeds/feed_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <iostream>

namespace {

using namespace emporium::feed_test;
using emporium::faults::shopper;
using emporium::test::http_client;
using emporium::test::server_process;
using namespace std::chrono_literals;
namespace faults = emporium::faults;
namespace test = emporium::test;

constexpr std::int64_t initial_stock = 100'000;
/// How long the order load runs.
constexpr auto load_time = 5s;
/// How long the last events may take to arrive once the load stopped (a bound, not a speed).
constexpr auto settle_limit = ms{10'000};

std::vector<shopper> shoppers(http_client& c, int n) {
  std::vector<shopper> out;
  for (int i = 0; i < n; ++i)
    out.push_back(faults::new_shopper(c));
  return out;
}

std::string product_topic(const std::string& id) {
  return "product:" + id;
}

/// The seq a "subscribed" answer starts from; fails the test when there was none.
std::int64_t subscribed_seq(ws_subscriber& s, const std::string& topic) {
  auto ack = s.wait_subscribed(topic);
  INFO("subscribed answer for " << topic << "; messages so far: " << json(s.messages()).dump()
                                << "; ended: " << s.end_reason());
  REQUIRE(ack.is_object());
  REQUIRE(ack.value("seq", std::int64_t{-1}) >= 0);
  return ack.value("seq", std::int64_t{-1});
}

/// The `retry:` line and the `: subscribed <topic> seq N` comment that open an event stream;
/// N, or -1 when they did not come within the limit.
std::int64_t sse_subscribed_seq(sse_subscriber& s, const std::string& topic) {
  auto marker = ": subscribed " + topic + " seq ";
  if (!s.wait_text("\n\n", 10s) || !s.wait_text(marker, 1s))
    return -1;
  auto raw = s.raw();
  auto at = raw.find(marker) + marker.size();
  return std::stoll(raw.substr(at, raw.find('\n', at) - at));
}

std::string show_statuses(const std::map<std::string, std::size_t>& by) {
  std::string out;
  for (const auto& [k, n] : by)
    out += k + ": " + std::to_string(n) + "; ";
  return out;
}

} // namespace

TEST_CASE(
  "under a concurrent order load a WebSocket subscriber gets every stock change of the "
  "product in order with no gap, and its last event's stock is GET's stock",
  "[feeds][load]") {
  server_process srv{faults::fault_env()};
  http_client api{srv.host(), srv.port(), 30s};
  auto product = faults::create_product(api, initial_stock);
  auto topic = product_topic(product);
  auto buyers = shoppers(api, 4);
  pqxx::connection db{test::pg_url()};

  ws_subscriber watcher{srv.host(), srv.port()};
  watcher.connect();
  watcher.subscribe(topic);
  auto from = subscribed_seq(watcher, topic);
  CHECK(from == outbox_max_seq(db, topic));

  order_churn load{{{srv.host(), srv.port()}}, buyers, product};
  load.start();
  std::this_thread::sleep_for(load_time);
  load.stop();
  INFO("order load: " << show_statuses(load.statuses()));
  REQUIRE(load.placed() > 0);
  REQUIRE(load.cancelled() > 0);

  auto to = outbox_max_seq(db, topic);
  // Every order placed and every one cancelled changed the stock once.
  CHECK(to - from == static_cast<std::int64_t>(load.placed() + load.cancelled()));
  CHECK(watcher.wait_seq(topic, to, settle_limit));
  auto events = watcher.events(topic);
  auto seqs = watcher.seqs(topic);
  INFO("subscriber from seq " << from << ", outbox up to " << to << "; " << seqs.size()
                              << " events; connection: " << watcher.end_reason());
  CHECK(consecutive(seqs, from, to).empty());
  INFO(consecutive(seqs, from, to));

  // Each event is the outbox row of its seq, as the contract's wire form has it.
  auto rows = outbox(db, topic);
  std::size_t mismatched = 0;
  std::string example;
  for (const auto& e : events) {
    auto seq = e.value("seq", std::int64_t{-1});
    auto it = rows.find(seq);
    bool ok = it != rows.end() && e.value("type", "") == "stock_changed"
              && e.value("topic", "") == topic && e.at("data") == it->second;
    if (!ok && mismatched++ == 0)
      example = e.dump() + " vs outbox " + (it == rows.end() ? "none" : it->second.dump());
  }
  INFO("first mismatch: " << example);
  CHECK(mismatched == 0);

  REQUIRE_FALSE(events.empty());
  auto last_stock = events.back().at("data").value("stock", std::int64_t{-1});
  CHECK(last_stock == stock_of(srv.host(), srv.port(), product));
  CHECK(events.back().at("data").value("product_id", "") == product);
  std::cout << "[measure] feeds: " << seqs.size() << " stock changes delivered in order ("
            << load.placed() << " orders placed, " << load.cancelled() << " cancelled)"
            << std::endl;
}

TEST_CASE(
  "a subscriber that disconnects in the middle of the load and resumes with after "
  "(WebSocket) or Last-Event-ID (SSE) gets every seq exactly once",
  "[feeds][resume]") {
  server_process srv{faults::fault_env()};
  http_client api{srv.host(), srv.port(), 30s};
  auto product = faults::create_product(api, initial_stock);
  auto topic = product_topic(product);
  auto buyers = shoppers(api, 4);
  pqxx::connection db{test::pg_url()};

  auto first_ws = std::make_unique<ws_subscriber>(srv.host(), srv.port());
  first_ws->connect();
  first_ws->subscribe(topic);
  auto ws_from = subscribed_seq(*first_ws, topic);
  auto first_sse = std::make_unique<sse_subscriber>(srv.host(), srv.port(),
                                                    "/products/" + product + "/events");
  REQUIRE(first_sse->start() == 200);
  CHECK(first_sse->header("content-type").rfind("text/event-stream", 0) == 0);
  CHECK(first_sse->header("cache-control") == "no-store");
  auto sse_from = sse_subscribed_seq(*first_sse, topic);
  INFO("stream so far: " << first_sse->raw());
  REQUIRE(sse_from >= 0);
  CHECK(first_sse->raw().rfind("retry: 2000\n", 0) == 0);

  order_churn load{{{srv.host(), srv.port()}}, buyers, product};
  load.start();
  // Both go away once they have seen a few events, while the load goes on.
  CHECK(first_ws->wait_seq(topic, ws_from + 5, 10s));
  CHECK(first_sse->wait_id(sse_from + 5, 10s));
  first_ws->drop();
  first_sse->drop();
  auto ws_before = first_ws->seqs(topic);
  auto sse_before = first_sse->ids();
  REQUIRE_FALSE(ws_before.empty());
  REQUIRE_FALSE(sse_before.empty());
  // Events committed while nobody listened: the resumed subscriptions must replay them.
  auto gap_until = outbox_max_seq(db, topic) + 3;
  auto until = steady::now() + 10s;
  while (outbox_max_seq(db, topic) < gap_until && steady::now() < until)
    std::this_thread::sleep_for(20ms);

  ws_subscriber second_ws{srv.host(), srv.port()};
  second_ws.connect();
  second_ws.subscribe(topic, ws_before.back());
  auto ack = second_ws.wait_subscribed(topic);
  INFO("resumed subscription's answer: " << ack.dump());
  REQUIRE(ack.is_object());
  sse_subscriber second_sse{srv.host(),
                            srv.port(),
                            "/products/" + product + "/events",
                            {{"Last-Event-ID", std::to_string(sse_before.back())}}};
  REQUIRE(second_sse.start() == 200);

  std::this_thread::sleep_for(2s);
  load.stop();
  INFO("order load: " << show_statuses(load.statuses()));
  auto to = outbox_max_seq(db, topic);
  CHECK(second_ws.wait_seq(topic, to, settle_limit));
  CHECK(second_sse.wait_id(to, settle_limit));

  auto ws_all = ws_before;
  for (auto s : second_ws.seqs(topic))
    ws_all.push_back(s);
  INFO("WebSocket: before the drop up to " << ws_before.back() << ", resumed from "
                                           << ack.value("seq", std::int64_t{-1}));
  CHECK(consecutive(ws_all, ws_from, to).empty());
  INFO(consecutive(ws_all, ws_from, to));
  auto sse_all = sse_before;
  for (auto s : second_sse.ids())
    sse_all.push_back(s);
  INFO("SSE: before the drop up to " << sse_before.back());
  CHECK(consecutive(sse_all, sse_from, to).empty());
  INFO(consecutive(sse_all, sse_from, to));
  // The SSE events are the same as the WebSocket ones: one outbox, two wire forms.
  auto rows = outbox(db, topic);
  for (const auto& e : second_sse.events()) {
    auto it = rows.find(std::stoll(e.id));
    REQUIRE(it != rows.end());
    CHECK(e.event == "stock_changed");
    CHECK(json::parse(e.data) == it->second);
  }
}

TEST_CASE(
  "a stalled subscriber is dropped while another subscriber of the same topic gets "
  "every event and the writes keep succeeding",
  "[feeds][stall]") {
  // A shorter send queue than the default: the stalled subscriber overflows it (with what both
  // sockets' buffers hold) after several hundred events, the one that reads never does. Pings
  // far apart: a peer that does not answer them is cut after two intervals, which is not what
  // this test is about.
  server_process srv{
    faults::fault_env({{"EMPORIUM_FEEDS_SEND_QUEUE_MAX", "64"}, {"EMPORIUM_FEEDS_PING_S", "300"}})};
  http_client api{srv.host(), srv.port(), 30s};
  auto product = faults::create_product(api, initial_stock);
  auto topic = product_topic(product);
  pqxx::connection db{test::pg_url()};
  auto dropped_before = metric_of(srv.host(), srv.port(), "emporium_feed_dropped_total");

  ws_subscriber stalled{srv.host(), srv.port(), {"", 1, false}};
  stalled.connect();
  stalled.subscribe(topic);
  ws_subscriber healthy{srv.host(), srv.port()};
  healthy.connect();
  healthy.subscribe(topic);
  auto from = subscribed_seq(healthy, topic);

  // Writes until the server reports the stalled one dropped (or far more events than its
  // queue and both sockets' buffers hold).
  std::map<int, int> statuses;
  double dropped_now = dropped_before;
  int writes = 0;
  auto writes_from = steady::now();
  for (; writes < 3'000; ++writes) {
    auto r = api.request("PATCH", "/products/" + product,
                         json{{"stock", initial_stock + writes + 1}}.dump(), faults::admin());
    ++statuses[r.status];
    if (writes % 25 == 24) {
      dropped_now = metric_of(srv.host(), srv.port(), "emporium_feed_dropped_total");
      if (dropped_now > std::max(0.0, dropped_before))
        break;
    }
  }
  std::cout << "[measure] feeds: the stalled subscriber was dropped after " << writes + 1
            << " writes (" << std::chrono::duration<double>(steady::now() - writes_from).count()
            << " s)" << std::endl;
  INFO("writes: " << writes << ", statuses: " << json(statuses).dump());
  CHECK(statuses.size() == 1);
  CHECK(statuses[200] > 0);
  CHECK(dropped_now == std::max(0.0, dropped_before) + 1);
  // More writes after the drop succeed as well, and reach the healthy subscriber.
  for (int i = 0; i < 20; ++i)
    CHECK(api
            .request("PATCH", "/products/" + product, json{{"stock", initial_stock - i - 1}}.dump(),
                     faults::admin())
            .status
          == 200);

  auto to = outbox_max_seq(db, topic);
  CHECK(healthy.wait_seq(topic, to, settle_limit));
  CHECK(consecutive(healthy.seqs(topic), from, to).empty());
  INFO(consecutive(healthy.seqs(topic), from, to));
  CHECK_FALSE(healthy.ended());

  // The stalled one reads what was left in its buffers: the server closed it with 1013.
  stalled.start_reading();
  stalled.wait([](const std::vector<json>&) { return false; }, settle_limit); // until it ends
  INFO("stalled subscriber: " << stalled.end_reason() << "; " << stalled.messages().size()
                              << " messages");
  CHECK(stalled.ended());
  CHECK(stalled.close_code() == 1013);
  // What it got before the drop was in order, with no gap.
  auto got = stalled.seqs(topic);
  if (!got.empty())
    CHECK(consecutive(got, got.front() - 1, got.back()).empty());
  CHECK(static_cast<std::int64_t>(got.size()) < to - from);
}
