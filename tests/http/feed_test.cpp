// The feeds' parts without sockets: the bounded send queue and the subscription sink, the
// WebSocket commands and messages, the event stream's framing, the per-address registry.

#include "http/feed_protocol.hpp"
#include "http/feed_queue.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <thread>

using namespace emporium;
using namespace emporium::http;
using json = nlohmann::json;

namespace {

std::shared_ptr<const model::feed_event> event(std::int64_t seq) {
  return model::make_feed_event("product:prod_1", seq, "stock_changed",
                                R"({"product_id":"prod_1","stock":)" + std::to_string(seq) + "}");
}

std::deque<feed_message> drain(feed_queue& q) {
  std::deque<feed_message> out;
  q.take(out);
  return out;
}

} // namespace

TEST_CASE("feeds: the queue keeps order and shares events, no copy per subscriber", "[feeds]") {
  feed_queue a{8}, b{8};
  auto e = event(1);
  REQUIRE(a.push(feed_message::of(e)));
  REQUIRE(b.push(feed_message::of(e)));
  REQUIRE(a.push(feed_message::of_text("x")));
  REQUIRE(a.push(feed_message::of(event(2))));
  auto out = drain(a);
  REQUIRE(out.size() == 3);
  CHECK(out[0].event.get() == e.get());
  CHECK(drain(b)[0].event.get() == e.get()); // the same object in both queues
  CHECK(out[1].text == "x");
  CHECK(out[2].event->seq == 2);
  CHECK(a.size() == 0);
}

TEST_CASE("feeds: a full queue overflows, closes and says so", "[feeds]") {
  feed_queue q{3};
  int told = 0;
  q.on_ready([&] { ++told; });
  CHECK(q.push(feed_message::of(event(1))));
  CHECK(told == 1); // the first push wakes the connection
  CHECK(q.push(feed_message::of(event(2))));
  CHECK(q.push(feed_message::of(event(3))));
  CHECK(told == 1); // not again until it has taken what waits
  CHECK_FALSE(q.overflowed());
  CHECK_FALSE(q.push(feed_message::of(event(4))));
  CHECK(q.overflowed());
  CHECK(q.closed());
  CHECK(told == 2); // told of the overflow: it closes the connection
  CHECK(drain(q).empty());
  CHECK_FALSE(q.push(feed_message::of(event(5))));
}

TEST_CASE("feeds: taking re-arms the wake-up", "[feeds]") {
  feed_queue q{4};
  int told = 0;
  q.on_ready([&] { ++told; });
  q.push(feed_message::of_text("a"));
  q.push(feed_message::of_text("b"));
  CHECK(drain(q).size() == 2);
  q.push(feed_message::of_text("c"));
  CHECK(told == 2);
}

TEST_CASE("feeds: a closed queue takes nothing", "[feeds]") {
  feed_queue q{4};
  q.push(feed_message::of_text("a"));
  q.close();
  CHECK(q.closed());
  CHECK_FALSE(q.overflowed());
  CHECK_FALSE(q.push(feed_message::of_text("b")));
  CHECK(drain(q).empty());
}

TEST_CASE("feeds: the sink acknowledges before its events and delivers in order", "[feeds]") {
  auto q = std::make_shared<feed_queue>(16);
  auto sink = std::make_shared<queue_sink>(q, "product:prod_1");
  // What the hub does: the subscribe callback (the acknowledgement), then the events.
  REQUIRE(sink->acknowledge(feeds::ws_subscribed("product:prod_1", 7)));
  for (int i = 8; i <= 10; ++i)
    REQUIRE(sink->deliver(event(i)));
  auto out = drain(*q);
  REQUIRE(out.size() == 4);
  CHECK(out[0].k == feed_message::kind::text);
  CHECK(json::parse(out[0].text)["type"] == "subscribed");
  for (int i = 1; i <= 3; ++i)
    CHECK(out[static_cast<std::size_t>(i)].event->seq == 7 + i);
}

TEST_CASE("feeds: the acknowledgement is not overtaken by events pushed from another thread",
          "[feeds]") {
  auto q = std::make_shared<feed_queue>(10'000);
  auto sink = std::make_shared<queue_sink>(q, "product:prod_1");
  std::atomic<bool> acked{false};
  // The hub's thread: acknowledges, then delivers; the connection drains meanwhile.
  std::thread hub{[&] {
    sink->acknowledge("ack");
    acked = true;
    for (int i = 1; i <= 2000; ++i)
      sink->deliver(event(i));
  }};
  std::deque<feed_message> seen;
  while (seen.size() < 2001) {
    q->take(seen);
    std::this_thread::yield();
  }
  hub.join();
  REQUIRE(seen.size() == 2001);
  CHECK(seen.front().text == "ack");
  for (std::size_t i = 1; i < seen.size(); ++i)
    REQUIRE(seen[i].event->seq == static_cast<std::int64_t>(i));
}

TEST_CASE("feeds: a full queue makes the sink refuse, so the hub drops the subscription",
          "[feeds]") {
  auto q = std::make_shared<feed_queue>(2);
  queue_sink sink{q, "product:prod_1"};
  CHECK(sink.deliver(event(1)));
  CHECK(sink.deliver(event(2)));
  CHECK_FALSE(sink.deliver(event(3)));
  CHECK_FALSE(sink.deliver(event(4)));
  CHECK(q->overflowed());
}

TEST_CASE(
  "feeds: after unsubscribing, the confirmation follows the queued events and nothing "
  "more is queued",
  "[feeds]") {
  auto q = std::make_shared<feed_queue>(16);
  queue_sink sink{q, "product:prod_1"};
  sink.deliver(event(1));
  sink.retire(feed_message::of_text("unsubscribed"));
  CHECK(sink.deliver(event(2))); // one in flight may still come: accepted, not queued
  sink.end(failure{errc::unavailable, "shutting down", {}});
  auto out = drain(*q);
  REQUIRE(out.size() == 2);
  CHECK(out[0].event->seq == 1);
  CHECK(out[1].text == "unsubscribed");
}

TEST_CASE("feeds: end and refuse queue their status once", "[feeds]") {
  auto q = std::make_shared<feed_queue>(16);
  queue_sink ended{q, "product:prod_1"};
  ended.end(failure{errc::gone, "too old", {}});
  ended.end(failure{errc::unavailable, "again", {}});
  queue_sink refused{q, "order:ord_1"};
  refused.refuse(404, "no order has this id");
  auto out = drain(*q);
  REQUIRE(out.size() == 2);
  CHECK(out[0].k == feed_message::kind::ended);
  CHECK(out[0].status == 410);
  CHECK(out[0].topic == "product:prod_1");
  CHECK(out[1].k == feed_message::kind::failed);
  CHECK(out[1].status == 404);
  CHECK(out[1].topic == "order:ord_1");
}

// -- WebSocket commands ---------------------------------------------------------------------------

TEST_CASE("feeds: WebSocket commands parse", "[feeds]") {
  using kind = feeds::command::kind;
  auto s = feeds::parse_command(R"({"subscribe":"product:prod_01ARZ3NDEKTSV4RRFFQ69G5FAV"})");
  REQUIRE(s.k == kind::subscribe);
  CHECK(s.topic.k == model::feed_topic::kind::product);
  CHECK(s.topic.id == "prod_01ARZ3NDEKTSV4RRFFQ69G5FAV");
  CHECK_FALSE(s.after);

  auto r = feeds::parse_command(R"({"after":12,"subscribe":"order:ord_X"})");
  REQUIRE(r.k == kind::subscribe);
  CHECK(r.topic.k == model::feed_topic::kind::order);
  REQUIRE(r.after);
  CHECK(*r.after == 12);
  CHECK(*feeds::parse_command(R"({"subscribe":"order:ord_X","after":0})").after == 0);

  auto u = feeds::parse_command(R"({"unsubscribe":"product:prod_1"})");
  REQUIRE(u.k == kind::unsubscribe);
  CHECK(u.topic.name() == "product:prod_1");
}

TEST_CASE("feeds: every malformed WebSocket command is a 400 error naming what is wrong",
          "[feeds]") {
  struct bad_case {
    const char* text;
    const char* detail_part;
    bool names_topic;
  };
  const std::vector<bad_case> cases{
    {"", "not JSON", false},
    {"{", "not JSON", false},
    {"subscribe product:1", "not JSON", false},
    {"[]", "JSON object", false},
    {"\"product:prod_1\"", "JSON object", false},
    {"{}", "exactly one", false},
    {R"({"subscribe":"product:p","unsubscribe":"product:p"})", "exactly one", true},
    {R"({"subscribe":"product:p","extra":1})", "unknown key \"extra\"", true},
    {R"({"unsubscribe":"product:p","after":1})", "unknown key \"after\"", true},
    {R"({"subscribe":1})", "topic string", false},
    {R"({"subscribe":null})", "topic string", false},
    {R"({"subscribe":"shoe:1"})", "product:<id> or order:<id>", true},
    {R"({"subscribe":"product:"})", "product:<id> or order:<id>", true},
    {R"({"subscribe":"product"})", "product:<id> or order:<id>", true},
    {R"({"subscribe":"product:p","after":-1})", "\"after\"", true},
    {R"({"subscribe":"product:p","after":1.5})", "\"after\"", true},
    {R"({"subscribe":"product:p","after":"3"})", "\"after\"", true},
    {R"({"subscribe":"product:p","after":null})", "\"after\"", true},
    {R"({"subscribe":"product:p","after":18446744073709551615})", "\"after\"", true},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto cmd = feeds::parse_command(c.text);
    REQUIRE(cmd.k == feeds::command::kind::invalid);
    CHECK(cmd.status == 400);
    CHECK_THAT(cmd.detail, Catch::Contains(c.detail_part));
    CHECK(cmd.error_topic.has_value() == c.names_topic);
    auto msg = json::parse(feeds::ws_error(cmd.error_topic, cmd.status, cmd.detail));
    CHECK(msg["type"] == "error");
    CHECK(msg["status"] == 400);
    CHECK(msg["detail"] == cmd.detail);
    CHECK(msg.contains("topic"));
    CHECK(msg["topic"].is_null() == !c.names_topic);
  }
}

TEST_CASE("feeds: the server's WebSocket messages", "[feeds]") {
  CHECK(feeds::ws_subscribed("product:prod_1", 5)
        == R"({"type":"subscribed","topic":"product:prod_1","seq":5})");
  CHECK(feeds::ws_unsubscribed("order:ord_1")
        == R"({"type":"unsubscribed","topic":"order:ord_1"})");
  CHECK(feeds::ws_error(std::nullopt, 400, "bad")
        == R"({"type":"error","topic":null,"status":400,"detail":"bad"})");
  auto odd = json::parse(feeds::ws_error(std::string{"product:\"x\n"}, 404, "no"));
  CHECK(odd["topic"] == "product:\"x\n"); // client text is escaped
}

// -- event streams --------------------------------------------------------------------------------

TEST_CASE("feeds: event stream framing", "[feeds]") {
  CHECK(feeds::sse_preamble("product:prod_1", 41)
        == "retry: 2000\n: subscribed product:prod_1 seq 41\n\n");
  CHECK(feeds::sse_keep_alive() == ": keep-alive\n\n");
  auto e = model::make_feed_event("order:ord_1", 3, "order_status",
                                  R"({"order_id":"ord_1","status":"paid"})");
  CHECK(e->sse_text
        == "id: 3\nevent: order_status\ndata: {\"order_id\":\"ord_1\",\"status\":\"paid\"}\n\n");
  CHECK(
    e->ws_text
    == R"({"topic":"order:ord_1","seq":3,"type":"order_status","data":{"order_id":"ord_1","status":"paid"}})");
}

TEST_CASE("feeds: an event stream resumes after Last-Event-ID, else ?after=", "[feeds]") {
  auto with = [](std::vector<std::pair<std::string, std::string>> headers,
                 std::vector<std::pair<std::string, std::string>> query) {
    request r;
    for (auto& [k, v] : headers)
      r.headers.emplace(k, v);
    r.query = std::move(query);
    return r;
  };
  bool bad = true;
  CHECK_FALSE(feeds::resume_after(with({}, {}), bad));
  CHECK_FALSE(bad);
  CHECK(feeds::resume_after(with({{"last-event-id", "17"}}, {}), bad) == 17);
  CHECK(feeds::resume_after(with({}, {{"after", "0"}}), bad) == 0);
  CHECK(feeds::resume_after(with({{"last-event-id", "5"}}, {{"after", "9"}}), bad) == 5);
  CHECK_FALSE(bad);
  for (const char* v : {"", "-1", "1.0", " 1", "x", "1234567890123456789"}) {
    INFO(v);
    CHECK_FALSE(feeds::resume_after(with({{"last-event-id", v}}, {}), bad));
    CHECK(bad);
    CHECK_FALSE(feeds::resume_after(with({}, {{"after", v}}), bad));
    CHECK(bad);
  }
}

TEST_CASE("feeds: connections are limited per address and counted per transport", "[feeds]") {
  feeds::registry reg{2};
  CHECK(reg.add("192.0.2.1", feeds::transport::ws));
  CHECK(reg.add("192.0.2.1", feeds::transport::sse));
  CHECK_FALSE(reg.add("192.0.2.1", feeds::transport::ws)); // WebSocket and SSE count together
  CHECK(reg.add("192.0.2.2", feeds::transport::ws));
  CHECK(reg.open(feeds::transport::ws) == 2);
  CHECK(reg.open(feeds::transport::sse) == 1);
  reg.remove("192.0.2.1", feeds::transport::sse);
  CHECK(reg.add("192.0.2.1", feeds::transport::sse));
}
