// The real-time feeds of a three-node cluster: subscribers on two nodes of a product owned by
// the third, an order load through those two, the owner killed with -9. Every node hears the
// outbox's notifications itself, so its subscribers keep getting consecutive seqs while the
// product re-homes; a subscriber whose node died resumes on a survivor with `after` and gets
// exactly what it missed; the outbox holds each order's and the product's history with no seq
// missing and none twice. Assertions are about behaviour (and the configured deadlines), never
// speed; the load threads only record.

#include "cluster/cluster_support.hpp"
#include "feeds/feed_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <iostream>

namespace {

using namespace emporium::cluster_test;
using emporium::feed_test::consecutive;
using emporium::feed_test::order_churn;
using emporium::feed_test::outbox;
using emporium::feed_test::outbox_max_seq;
using emporium::feed_test::stock_of;
using emporium::feed_test::ws_subscriber;
using emporium::test::http_client;
using namespace std::chrono_literals;
namespace faults = emporium::faults;
namespace test = emporium::test;

std::int64_t subscribed_seq(ws_subscriber& s, const std::string& topic, const std::string& where) {
  auto ack = s.wait_subscribed(topic);
  INFO("subscribed answer for " << topic << " on " << where << "; messages: "
                                << json(s.messages()).dump() << "; ended: " << s.end_reason());
  REQUIRE(ack.is_object());
  return ack.value("seq", std::int64_t{-1});
}

} // namespace

TEST_CASE(
  "feeds in a cluster: subscribers on two nodes get consecutive seqs while the "
  "product's owner is killed under an order load, and one of the killed node resumes "
  "on a survivor with after",
  "[cluster][feeds]") {
  cluster_options opts;
  opts.env = faults::fault_env({{"EMPORIUM_HTTP_REQUEST_TIMEOUT_MS", "5000"}});
  cluster c{opts};
  http_client api{c.node(0).host(), c.node(0).port(), 30s};
  auto product = faults::create_product(api, 100'000);
  auto topic = "product:" + product;
  auto owner = c.index_of(c.agreed_owner(product));
  REQUIRE(owner >= 0);
  std::vector<int> survivors;
  for (int i = 0; i < c.size(); ++i)
    if (i != owner)
      survivors.push_back(i);
  const int a = survivors[0], b = survivors[1];
  http_client via_a{c.node(a).host(), c.node(a).port(), 30s};
  std::vector<faults::shopper> buyers;
  for (int i = 0; i < 4; ++i)
    buyers.push_back(faults::new_shopper(via_a));
  pqxx::connection db{test::pg_url()};

  ws_subscriber on_a{c.node(a).host(), c.node(a).port()};
  ws_subscriber on_b{c.node(b).host(), c.node(b).port()};
  ws_subscriber on_owner{c.node(owner).host(), c.node(owner).port()};
  for (auto* s : {&on_a, &on_b, &on_owner}) {
    s->connect();
    s->subscribe(topic);
  }
  auto from_a = subscribed_seq(on_a, topic, "node " + std::to_string(a));
  auto from_b = subscribed_seq(on_b, topic, "node " + std::to_string(b));
  auto from_owner = subscribed_seq(on_owner, topic, "the owner");

  order_churn load{c.endpoints({a, b}), buyers, product};
  load.start();
  CHECK(on_owner.wait_seq(topic, from_owner + 5, 10s));
  c.kill9(owner);
  auto killed_at = steady::now();
  // Its subscriber sees the connection end; it resumes on a survivor after what it got.
  on_owner.wait([](const std::vector<json>&) { return false; }, 5s); // until it ends
  CHECK(on_owner.ended());
  auto before_kill = on_owner.seqs(topic);
  REQUIRE_FALSE(before_kill.empty());
  ws_subscriber resumed{c.node(a).host(), c.node(a).port()};
  resumed.connect();
  resumed.subscribe(topic, before_kill.back());
  CHECK(resumed.wait_subscribed(topic).is_object());

  // The load goes on while the product re-homes, and a while after.
  std::this_thread::sleep_until(killed_at + 5s);
  load.stop();
  auto statuses = load.statuses();
  std::string shown;
  for (const auto& [k, n] : statuses)
    shown += k + ": " + std::to_string(n) + "; ";
  INFO("order load: " << shown);
  auto to = outbox_max_seq(db, topic);
  REQUIRE(to > from_a);

  for (auto* s : {&on_a, &on_b, &resumed})
    CHECK(s->wait_seq(topic, to, 10s));
  INFO("outbox up to seq " << to << "; node " << a << ": " << on_a.end_reason() << "; node " << b
                           << ": " << on_b.end_reason());
  CHECK(consecutive(on_a.seqs(topic), from_a, to).empty());
  INFO(consecutive(on_a.seqs(topic), from_a, to));
  CHECK(consecutive(on_b.seqs(topic), from_b, to).empty());
  INFO(consecutive(on_b.seqs(topic), from_b, to));
  auto joined = before_kill;
  for (auto s : resumed.seqs(topic))
    joined.push_back(s);
  CHECK(consecutive(joined, from_owner, to).empty());
  INFO("the killed node's subscriber: up to " << before_kill.back() << " there, then "
                                              << consecutive(joined, from_owner, to));
  // The stock the last event carries is the product's.
  auto last = on_a.events(topic);
  REQUIRE_FALSE(last.empty());
  CHECK(last.back().at("data").value("stock", std::int64_t{-1})
        == stock_of(c.node(a).host(), c.node(a).port(), product));

  // The whole history against the outbox: the product's seqs are 1..event_seq, one event per
  // order placed and per order cancelled; each order's own seqs are dense from 1.
  auto rows = outbox(db, topic);
  std::vector<std::int64_t> product_seqs;
  for (const auto& [seq, payload] : rows)
    product_seqs.push_back(seq);
  CHECK(consecutive(product_seqs, 0, to).empty());
  {
    pqxx::read_transaction tx{db};
    CHECK(tx.exec_params("SELECT event_seq FROM products WHERE id = $1", product)
            .at(0)[0]
            .as<std::int64_t>()
          == to);
  }
  auto orders = faults::orders_of(db, buyers);
  std::size_t cancelled = 0;
  std::string order_failures;
  for (const auto& [id, status] : orders) {
    cancelled += status == "cancelled";
    std::vector<std::int64_t> seqs;
    for (const auto& [seq, payload] : outbox(db, "order:" + id))
      seqs.push_back(seq);
    if (seqs.empty() || !consecutive(seqs, 0, seqs.back()).empty())
      order_failures += " " + id + ": " + json(seqs).dump() + ";";
  }
  INFO("orders whose outbox seqs are not 1..n:" << order_failures);
  CHECK(order_failures.empty());
  CHECK(to - from_a == static_cast<std::int64_t>(orders.size() + cancelled));
  std::cout << "[measure] feeds in a cluster: " << orders.size() << " orders (" << cancelled
            << " cancelled), seqs " << from_a + 1 << ".." << to
            << " delivered on both survivors; the killed node's subscriber resumed after "
            << before_kill.back() << std::endl;
}
