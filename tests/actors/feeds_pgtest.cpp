// The real-time feeds through the runtime's facade (subscribe, unsubscribe), against the real
// PostgreSQL: events of products and orders reach a test sink exactly once and in seq order, live,
// after a resume, from another node on the same database, across a lost LISTEN connection; and
// the refusals (someone else's order, events no longer kept, a sink that cannot keep up).
// Sinks are called on the hub's actor thread: they only record, and the test thread waits for
// what they recorded with a deadline.

#include "actors/runtime_support.hpp"

#include "actors/runtime.hpp"
#include "core/feed.hpp"
#include "persistence/order_store.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace emporium;
using namespace std::chrono_literals;
using actors::runtime;
using namespace emporium::test::runtime_pg;

namespace {

/// Records what the hub hands it; refuses every event after `accept` of them when set.
class test_sink : public model::feed_sink {
 public:
  explicit test_sink(int accept = -1) : accept_(accept) {}

  bool deliver(const std::shared_ptr<const model::feed_event>& e) override {
    std::lock_guard<std::mutex> lock{mutex_};
    ++calls_;
    if (accept_ >= 0 && static_cast<int>(events_.size()) >= accept_)
      return false;
    events_.push_back(e);
    changed_.notify_all();
    return true;
  }

  void end(const failure& why) override {
    std::lock_guard<std::mutex> lock{mutex_};
    ended_ = why;
    changed_.notify_all();
  }

  std::vector<std::int64_t> seqs() const {
    std::lock_guard<std::mutex> lock{mutex_};
    std::vector<std::int64_t> out;
    for (const auto& e : events_)
      out.push_back(e->seq);
    return out;
  }

  std::vector<std::shared_ptr<const model::feed_event>> events() const {
    std::lock_guard<std::mutex> lock{mutex_};
    return events_;
  }

  int calls() const {
    std::lock_guard<std::mutex> lock{mutex_};
    return calls_;
  }

  std::optional<failure> ended() const {
    std::lock_guard<std::mutex> lock{mutex_};
    return ended_;
  }

  /// Waits until the sink holds `n` events (or ended); false on timeout.
  bool wait_for(std::size_t n, std::chrono::milliseconds limit = 15s) {
    std::unique_lock<std::mutex> lock{mutex_};
    return changed_.wait_for(lock, limit, [&] { return events_.size() >= n || ended_; })
           && events_.size() >= n;
  }

  bool wait_ended(std::chrono::milliseconds limit = 15s) {
    std::unique_lock<std::mutex> lock{mutex_};
    return changed_.wait_for(lock, limit, [&] { return ended_.has_value(); });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::shared_ptr<const model::feed_event>> events_;
  std::optional<failure> ended_;
  int accept_ = -1;
  int calls_ = 0;
};

std::vector<std::int64_t> range(std::int64_t first, std::int64_t last) {
  std::vector<std::int64_t> out;
  for (auto s = first; s <= last; ++s)
    out.push_back(s);
  return out;
}

model::feed_topic product_topic(const std::string& id) {
  return model::feed_topic{model::feed_topic::kind::product, id};
}

model::feed_topic order_topic(const std::string& id) {
  return model::feed_topic{model::feed_topic::kind::order, id};
}

result<std::int64_t> subscribe(runtime& rt, const model::feed_topic& topic,
                               const std::shared_ptr<model::feed_sink>& sink,
                               std::optional<std::int64_t> after = std::nullopt,
                               model::principal who = {}) {
  pending<std::int64_t> p;
  rt.subscribe(std::move(who), topic, after, sink, p.callback());
  return p.wait(15s);
}

std::int64_t subscribe_ok(runtime& rt, const model::feed_topic& topic,
                          const std::shared_ptr<model::feed_sink>& sink,
                          std::optional<std::int64_t> after = std::nullopt,
                          model::principal who = {}) {
  auto r = subscribe(rt, topic, sink, after, std::move(who));
  if (!r)
    FAIL("subscribe " << topic.name() << ": " << describe(r.error()));
  return r.value();
}

/// Sets the product's stock through the runtime (a PATCH): one stock_changed event.
void set_stock(runtime& rt, const std::string& id, std::int64_t stock) {
  model::product_patch patch;
  patch.stock = stock;
  auto r = update(rt, id, patch);
  if (!r)
    FAIL("set stock: " << describe(r.error()));
}

model::order place(runtime& rt, const model::principal& who, const std::string& product_id,
                   std::int64_t quantity = 1) {
  model::order_request req;
  req.items.push_back({product_id, quantity});
  req.shipping_address.name = "Ann";
  req.shipping_address.line1 = "1 Main St";
  req.shipping_address.city = "Springfield";
  req.shipping_address.postal_code = "12345";
  req.shipping_address.country = "US";
  pending<model::order_outcome> p;
  rt.place_order(who, req, p.callback());
  auto r = p.wait(20s);
  if (!r)
    FAIL("place order: " << describe(r.error()));
  return r->placed;
}

void cancel(runtime& rt, const model::principal& who, const std::string& order_id) {
  pending<model::order> p;
  rt.cancel_order(who, order_id, p.callback());
  auto r = p.wait(20s);
  if (!r)
    FAIL("cancel order: " << describe(r.error()));
}

/// A statement on a connection of the test's own.
void exec(const std::string& sql) {
  persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 20'000}};
  pqxx::work tx{s.connection()};
  tx.exec(sql);
  tx.commit();
}

/// Ends every backend LISTENing on the feeds' channel (every runtime's listener): their
/// connections are lost as in a network failure or a PostgreSQL restart.
int kill_listeners(persistence::pg_session& s) {
  pqxx::nontransaction tx{s.connection()};
  auto r = tx.exec(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE pid <> pg_backend_pid() AND query ILIKE 'LISTEN%emporium_events%'");
  return r.at(0)[0].as<int>();
}

int kill_listeners() {
  persistence::pg_session s{persistence::pg_options{test::pg_url(), 2'000, 20'000}};
  return kill_listeners(s);
}

} // namespace

TEST_CASE("feeds: a product subscriber gets every stock change in seq order, live", "[pg][feeds]") {
  runtime rt{settings()};
  auto p = create_ok(rt);
  auto sink = std::make_shared<test_sink>();
  auto current = subscribe_ok(rt, product_topic(p.id), sink);
  CHECK(current == 0); // a new product has no event yet
  CHECK(eventually([&] { return rt.stats().feeds.listening; }, 15s));

  auto customer = new_customer(rt);
  auto o1 = place(rt, customer, p.id, 2);
  place(rt, customer, p.id, 1);
  cancel(rt, customer, o1.id); // returns its 2 to stock
  set_stock(rt, p.id, 77);
  REQUIRE(sink->wait_for(4));
  std::this_thread::sleep_for(200ms); // nothing more, nothing twice
  CHECK(sink->seqs() == range(1, 4));
  auto events = sink->events();
  std::vector<std::int64_t> stocks;
  for (const auto& e : events) {
    CHECK(e->topic == "product:" + p.id);
    CHECK(e->type == "stock_changed");
    auto data = nlohmann::json::parse(e->data);
    CHECK(data.at("product_id") == p.id);
    stocks.push_back(data.at("stock").get<std::int64_t>());
    CHECK(
      nlohmann::json::parse(e->ws_text)
      == nlohmann::json({{"topic", e->topic}, {"seq", e->seq}, {"type", e->type}, {"data", data}}));
    CHECK(e->sse_text
          == "id: " + std::to_string(e->seq) + "\nevent: stock_changed\ndata: " + e->data + "\n\n");
  }
  const auto start = p.stock;
  CHECK(stocks == std::vector<std::int64_t>{start - 2, start - 3, start - 1, 77});
  auto s = rt.stats().feeds;
  CHECK(s.subscriptions == 1);
  CHECK(s.topics == 1);
  CHECK(s.delivered >= 4);

  // A PATCH that leaves the stock as it is writes no event; after unsubscribing, nothing comes.
  update(rt, p.id, price_patch(4321));
  rt.unsubscribe(product_topic(p.id), sink);
  set_stock(rt, p.id, 5);
  std::this_thread::sleep_for(300ms);
  CHECK(sink->seqs() == range(1, 4));
  CHECK(eventually([&] { return rt.stats().feeds.subscriptions == 0; }, 15s));
}

TEST_CASE("feeds: an order's customer follows its status, and only the owner and the admin may",
          "[pg][feeds]") {
  runtime rt{settings()};
  auto p = create_ok(rt);
  auto owner = new_customer(rt);
  auto stranger = new_customer(rt);
  auto o = place(rt, owner, p.id);

  auto mine = std::make_shared<test_sink>();
  CHECK(subscribe_ok(rt, order_topic(o.id), mine, std::nullopt, owner) == 1);
  auto admin = std::make_shared<test_sink>();
  CHECK(subscribe_ok(rt, order_topic(o.id), admin, 0, model::principal{true, ""}) == 1);

  for (const auto& who : {stranger, model::principal{}}) {
    auto r = subscribe(rt, order_topic(o.id), std::make_shared<test_sink>(), std::nullopt, who);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::not_found);
  }
  auto unknown = subscribe(rt, order_topic(core::new_id("ord")), std::make_shared<test_sink>(),
                           std::nullopt, model::principal{true, ""});
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == errc::not_found);
  auto malformed = subscribe(rt, product_topic("nope"), std::make_shared<test_sink>());
  REQUIRE_FALSE(malformed);
  CHECK(malformed.error().code == errc::not_found);
  auto no_product = subscribe(rt, product_topic(core::new_id("prod")),
                              std::make_shared<test_sink>());
  REQUIRE_FALSE(no_product);
  CHECK(no_product.error().code == errc::not_found);
  auto beyond = subscribe(rt, order_topic(o.id), std::make_shared<test_sink>(), 2, owner);
  REQUIRE_FALSE(beyond);
  CHECK(beyond.error().code == errc::invalid_input);

  cancel(rt, owner, o.id);
  REQUIRE(mine->wait_for(1));
  REQUIRE(admin->wait_for(2)); // after 0: the placement, then the cancellation
  CHECK(mine->seqs() == std::vector<std::int64_t>{2});
  CHECK(admin->seqs() == std::vector<std::int64_t>{1, 2});
  auto data = nlohmann::json::parse(mine->events().at(0)->data);
  CHECK(data.at("order_id") == o.id);
  CHECK(data.at("status") == "cancelled");
  CHECK(admin->events().at(0)->type == "order_status");
  CHECK(nlohmann::json::parse(admin->events().at(0)->data).at("status") == "pending_payment");
}

TEST_CASE("feeds: a resume with after gets exactly the missed events, then the live ones",
          "[pg][feeds]") {
  runtime rt{settings()};
  auto p = create_ok(rt);
  for (int i = 1; i <= 5; ++i)
    set_stock(rt, p.id, 100 + i);
  auto sink = std::make_shared<test_sink>();
  CHECK(subscribe_ok(rt, product_topic(p.id), sink, 2) == 5);
  REQUIRE(sink->wait_for(3));
  set_stock(rt, p.id, 200);
  REQUIRE(sink->wait_for(4));
  std::this_thread::sleep_for(200ms);
  CHECK(sink->seqs() == range(3, 6));
  CHECK(nlohmann::json::parse(sink->events().front()->data).at("stock") == 103);
  CHECK(rt.stats().feeds.replayed >= 3);

  // More than a page of missed events: read back a page at a time.
  for (int i = 0; i < 300; ++i)
    exec("WITH s AS (UPDATE products SET event_seq = event_seq + 1 WHERE id = '" + p.id
         + "' RETURNING event_seq) INSERT INTO events (entity, seq, type, payload) SELECT 'product:"
         + p.id + "', s.event_seq, 'stock_changed', jsonb_build_object('product_id', '" + p.id
         + "', 'stock', s.event_seq) FROM s");
  auto late = std::make_shared<test_sink>();
  CHECK(subscribe_ok(rt, product_topic(p.id), late, 0) == 306);
  REQUIRE(late->wait_for(306));
  CHECK(late->seqs() == range(1, 306));
  // Written without a notification: the live subscriber catches up from the outbox too (the
  // late one's read showed the topic further on), then both get the next live one.
  set_stock(rt, p.id, 1);
  REQUIRE(sink->wait_for(4 + 301));
  CHECK(sink->seqs() == range(3, 307));
  REQUIRE(late->wait_for(307));
  CHECK(late->seqs() == range(1, 307));
}

TEST_CASE("feeds: a subscriber on a second node sees the first node's events", "[pg][feeds]") {
  runtime a{settings()};
  runtime b{settings()};
  auto p = create_ok(a);
  auto customer = new_customer(a);
  auto on_b = std::make_shared<test_sink>();
  auto on_a = std::make_shared<test_sink>();
  CHECK(subscribe_ok(b, product_topic(p.id), on_b) == 0);
  CHECK(subscribe_ok(a, product_topic(p.id), on_a) == 0);
  REQUIRE(eventually([&] { return a.stats().feeds.listening && b.stats().feeds.listening; }, 15s));
  for (int i = 0; i < 5; ++i)
    place(a, customer, p.id);
  set_stock(b, p.id, 9);
  REQUIRE(on_b->wait_for(6));
  REQUIRE(on_a->wait_for(6));
  std::this_thread::sleep_for(200ms);
  CHECK(on_b->seqs() == range(1, 6));
  CHECK(on_a->seqs() == range(1, 6));
}

TEST_CASE("feeds: no event is lost when the LISTEN connection is lost", "[pg][feeds]") {
  runtime rt{settings()};
  auto p = create_ok(rt);
  auto sink = std::make_shared<test_sink>();
  CHECK(subscribe_ok(rt, product_topic(p.id), sink) == 0);
  REQUIRE(eventually([&] { return rt.stats().feeds.listening; }, 15s));
  const auto replayed_before = rt.stats().feeds.replayed;

  // Stock changes keep coming while the listener is killed again and again.
  {
    std::atomic<bool> stop{false};
    std::thread killer([&] {
      while (!stop.load()) {
        kill_listeners();
        std::this_thread::sleep_for(40ms);
      }
    });
    struct joiner {
      std::atomic<bool>& stop;
      std::thread& t;
      ~joiner() {
        stop = true;
        t.join();
      }
    } join_killer{stop, killer};
    for (int i = 1; i <= 20; ++i)
      set_stock(rt, p.id, 1000 + i);
  }

  // Then the listener is kept from reconnecting (its role may not log in for a while) and three
  // more events commit, notified to nobody, with nothing after them to reveal a gap: only the
  // resync that follows the reconnection finds them.
  persistence::pg_session writer{persistence::pg_options{test::pg_url(), 2'000, 20'000}};
  auto set_login = [&writer](bool on) {
    pqxx::nontransaction tx{writer.connection()};
    tx.exec(std::string{"ALTER ROLE CURRENT_USER "} + (on ? "LOGIN" : "NOLOGIN"));
  };
  REQUIRE(eventually([&] { return rt.stats().feeds.listening; }, 15s));
  set_login(false);
  struct restore_login {
    std::function<void(bool)> set;
    ~restore_login() {
      try {
        set(true);
      } catch (const std::exception& e) {
        FAIL_CHECK("could not allow logins again: " << e.what());
      }
    }
  } restore{set_login};
  REQUIRE(eventually(
    [&] {
      kill_listeners(writer);
      return !rt.stats().feeds.listening;
    },
    15s));
  {
    pqxx::work tx{writer.connection()};
    for (int i = 0; i < 3; ++i)
      persistence::order_store::insert_event(
        tx, persistence::order_store::event_entity::product, p.id, "stock_changed",
        R"({"product_id":")" + p.id + R"(","stock":)" + std::to_string(i) + "}");
    tx.commit();
  }
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(rt.stats().feeds.listening);
  set_login(true);

  const bool all = sink->wait_for(23, 20s);
  const auto got = sink->seqs();
  CAPTURE(got);
  REQUIRE(all);
  std::this_thread::sleep_for(200ms);
  CHECK(sink->seqs() == range(1, 23));
  auto s = rt.stats().feeds;
  CHECK(s.listener_reconnects >= 1);
  CHECK(s.replayed > replayed_before);
  CHECK(eventually([&] { return rt.stats().feeds.listening; }, 15s));
}

TEST_CASE("feeds: a resume from before what the outbox keeps is gone", "[pg][feeds]") {
  runtime rt{settings()};
  auto p = create_ok(rt);
  for (int i = 1; i <= 4; ++i)
    set_stock(rt, p.id, i);
  // Retention deleted the two oldest.
  exec("DELETE FROM events WHERE entity = 'product:" + p.id + "' AND seq <= 2");
  for (std::int64_t after : {0, 1}) {
    auto sink = std::make_shared<test_sink>();
    auto r = subscribe(rt, product_topic(p.id), sink, after);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::gone);
  }
  auto fine = std::make_shared<test_sink>();
  CHECK(subscribe_ok(rt, product_topic(p.id), fine, 2) == 4);
  REQUIRE(fine->wait_for(2));
  auto current = std::make_shared<test_sink>();
  CHECK(subscribe_ok(rt, product_topic(p.id), current, 4) == 4);
  CHECK(subscribe_ok(rt, product_topic(p.id), std::make_shared<test_sink>()) == 4);
  std::this_thread::sleep_for(100ms);
  CHECK(fine->seqs() == range(3, 4));
  CHECK(current->seqs().empty());

  // Every event deleted: a resume that needs any of them is gone too, one at the head is not.
  exec("DELETE FROM events WHERE entity = 'product:" + p.id + "'");
  auto r = subscribe(rt, product_topic(p.id), std::make_shared<test_sink>(), 3);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::gone);
}

TEST_CASE("feeds: a sink that refuses an event is dropped and the others get everything",
          "[pg][feeds]") {
  runtime rt{settings()};
  auto p = create_ok(rt);
  auto full = std::make_shared<test_sink>(2); // takes two, then its queue is "full"
  std::vector<std::shared_ptr<test_sink>> others;
  for (int i = 0; i < 20; ++i)
    others.push_back(std::make_shared<test_sink>());
  subscribe_ok(rt, product_topic(p.id), others[0]);
  subscribe_ok(rt, product_topic(p.id), full);
  for (std::size_t i = 1; i < others.size(); ++i)
    subscribe_ok(rt, product_topic(p.id), others[i]);
  for (int i = 1; i <= 6; ++i)
    set_stock(rt, p.id, i);
  for (auto& o : others) {
    REQUIRE(o->wait_for(6));
  }
  std::this_thread::sleep_for(200ms);
  for (auto& o : others)
    CHECK(o->seqs() == range(1, 6));
  // The same event object for all: made once.
  CHECK(others[0]->events()[3].get() == others[19]->events()[3].get());
  CHECK(full->seqs() == range(1, 2));
  CHECK(full->calls() == 3); // the refused one, then nothing
  CHECK_FALSE(full->ended());
  auto s = rt.stats().feeds;
  CHECK(s.dropped >= 1);
  CHECK(s.subscriptions == 20);
}

TEST_CASE("feeds: shutting the runtime down ends every subscription as unavailable",
          "[pg][feeds]") {
  runtime rt{settings()};
  auto p = create_ok(rt);
  auto sink = std::make_shared<test_sink>();
  subscribe_ok(rt, product_topic(p.id), sink);
  rt.shutdown();
  REQUIRE(sink->wait_ended(5s));
  CHECK(sink->ended()->code == errc::unavailable);
  auto after = subscribe(rt, product_topic(p.id), std::make_shared<test_sink>());
  REQUIRE_FALSE(after);
  CHECK(after.error().code == errc::unavailable);
}

TEST_CASE("feeds: ten thousand subscribers of one topic each get every event once", "[pg][feeds]") {
  runtime rt{settings()};
  auto p = create_ok(rt);
  constexpr int n = 10'000;
  std::vector<std::shared_ptr<test_sink>> sinks;
  for (int i = 0; i < n; ++i)
    sinks.push_back(std::make_shared<test_sink>());
  // All at once: subscriptions to one topic share their head reads.
  std::vector<pending<std::int64_t>> answers(n);
  const auto t0 = clock_type::now();
  for (int i = 0; i < n; ++i)
    rt.subscribe({}, product_topic(p.id), std::nullopt, sinks[i], answers[i].callback());
  int ok = 0;
  for (auto& a : answers)
    ok += a.wait(30s) ? 1 : 0;
  const auto subscribed_s = seconds_since(t0);
  CHECK(ok == n);
  CHECK(rt.stats().feeds.subscriptions == n);

  const auto t1 = clock_type::now();
  for (int i = 1; i <= 3; ++i)
    set_stock(rt, p.id, i);
  for (auto& s : sinks)
    REQUIRE(s->wait_for(3, 30s));
  const auto delivered_s = seconds_since(t1);
  std::this_thread::sleep_for(100ms);
  for (auto& s : sinks)
    REQUIRE(s->seqs() == range(1, 3));
  CHECK(rt.stats().feeds.delivered >= 3 * n);
  WARN("10,000 subscriptions answered in " << subscribed_s << " s; 3 events to all of them in "
                                           << delivered_s << " s (3 PATCHes included)");
}
