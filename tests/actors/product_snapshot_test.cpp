#include "actors/product_snapshot.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using namespace emporium;
using namespace emporium::actors;

namespace {

snapshot_ptr snap(const std::string& id, std::int64_t version, std::int64_t stock = 10,
                  const std::string& name = "Lamp") {
  model::product p;
  p.id = id;
  p.name = name;
  p.version = version;
  p.stock = stock;
  return make_snapshot(std::move(p));
}

} // namespace

TEST_CASE("snapshots: each is one block of a pool, given back with its last reference",
          "[unit][snapshots]") {
  const auto before = core::block_pool::blocks_in_all_pools();
  auto s = snap("prod_a", 1);
  CHECK(core::block_pool::blocks_in_all_pools() == before + 1);
  CHECK(s->product.id == "prod_a");
  s.reset();
  CHECK(core::block_pool::blocks_in_all_pools() == before);
}

TEST_CASE("snapshots: a published snapshot is found until its actor removes it",
          "[unit][snapshots]") {
  product_registry r;
  CHECK_FALSE(r.find("prod_a"));
  r.publish(snap("prod_a", 1), 7);
  auto s = r.find("prod_a");
  REQUIRE(s);
  CHECK(s->product.version == 1);
  CHECK(r.size() == 1);
  CHECK_FALSE(r.find("prod_b"));

  r.remove("prod_a", 8); // another activation's removal leaves it
  CHECK(r.find("prod_a"));
  r.remove("prod_a", 7);
  CHECK_FALSE(r.find("prod_a"));
  CHECK(r.size() == 0);
  CHECK(s->product.version == 1); // a reader's copy outlives the removal
}

TEST_CASE("snapshots: an older version never replaces a newer one, the same version does",
          "[unit][snapshots]") {
  product_registry r;
  r.publish(snap("prod_a", 3, 10, "new"), 1);
  r.publish(snap("prod_a", 2, 10, "old"), 1);
  CHECK(r.find("prod_a")->product.name == "new");
  r.publish(snap("prod_a", 3, 10, "again"), 1);
  CHECK(r.find("prod_a")->product.name == "again");
  r.publish(snap("prod_a", 4, 10, "newer"), 2); // a fresh activation takes it over
  CHECK(r.find("prod_a")->product.version == 4);
  r.remove("prod_a", 1);
  CHECK(r.find("prod_a"));
  r.remove("prod_a", 2);
  CHECK_FALSE(r.find("prod_a"));
}

TEST_CASE(
  "snapshots: a committed stock change withholds older snapshots until the actor "
  "publishes its version",
  "[unit][snapshots]") {
  product_registry r;
  r.withhold("prod_a", 2); // nothing published: nothing happens
  CHECK_FALSE(r.find("prod_a"));
  r.publish(snap("prod_a", 1, 10, "Lamp"), 1);
  REQUIRE(r.find("prod_a"));

  r.withhold("prod_a", 1); // not newer than the snapshot: no change
  REQUIRE(r.find("prod_a"));

  // An order commits version 3 while version 2 (say a PATCH) is not published yet.
  r.withhold("prod_a", 3);
  CHECK_FALSE(r.find("prod_a"));
  r.publish(snap("prod_a", 2, 10, "Renamed"), 1);
  CHECK_FALSE(r.find("prod_a"));
  r.withhold("prod_a", 2); // a late or repeated one lowers nothing
  r.publish(snap("prod_a", 3, 9, "Renamed"), 1);
  auto s = r.find("prod_a");
  REQUIRE(s);
  CHECK(s->product.stock == 9);
  CHECK(s->product.name == "Renamed");
  CHECK(r.size() == 1);
  r.remove("prod_a", 1);
  CHECK(r.size() == 0);
}

TEST_CASE("snapshots: the encoding is made once and shared by every reader", "[unit][snapshots]") {
  auto s = snap("prod_a", 1);
  static std::atomic<int> calls{0};
  calls = 0;
  auto make = [](const model::product& p) {
    calls.fetch_add(1);
    return product_snapshot::encoding{"{\"id\":\"" + p.id + "\"}", "\"v1\""};
  };
  const product_snapshot::encoding* seen[8] = {};
  std::vector<std::thread> readers;
  for (int i = 0; i < 8; ++i)
    readers.emplace_back([&, i] { seen[i] = &s->encoded(make); });
  for (auto& t : readers)
    t.join();
  for (int i = 1; i < 8; ++i)
    CHECK(seen[i] == seen[0]);
  CHECK(seen[0]->body == "{\"id\":\"prod_a\"}");
  CHECK(&s->encoded(make) == seen[0]);
  auto before = calls.load();
  s->encoded(make);
  CHECK(calls.load() == before); // kept: not encoded again
}

TEST_CASE(
  "snapshots: concurrent readers see whole snapshots whose versions never go back while "
  "a writer publishes and orders take stock",
  "[unit][snapshots]") {
  product_registry r;
  constexpr int ids = 16;
  constexpr std::int64_t last = 2'000;
  auto id_of = [](int i) { return "prod_" + std::to_string(i); };
  // Each version v carries stock 10'000 - v and name "n<v>": a torn or mixed snapshot shows.
  auto make = [&](int i, std::int64_t v) {
    return snap(id_of(i), v, 10'000 - v, "n" + std::to_string(v));
  };
  for (int i = 0; i < ids; ++i)
    r.publish(make(i, 1), 1);

  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::atomic<std::int64_t> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t)
    readers.emplace_back([&] {
      std::vector<std::int64_t> seen(ids, 0);
      while (!done.load()) {
        for (int i = 0; i < ids; ++i) {
          auto s = r.find(id_of(i));
          if (!s)
            continue; // withheld for a moment
          const auto& p = s->product;
          reads.fetch_add(1, std::memory_order_relaxed);
          if (p.version < seen[i] || p.id != id_of(i) || p.stock != 10'000 - p.version)
            bad.fetch_add(1);
          seen[i] = p.version;
        }
      }
    });
  // Orders withhold each version before the actor publishes it.
  for (std::int64_t v = 2; v <= last; ++v)
    for (int i = 0; i < ids; ++i) {
      r.withhold(id_of(i), v);
      r.publish(make(i, v), 1);
    }
  done = true;
  for (auto& t : readers)
    t.join();
  CHECK(bad.load() == 0);
  CHECK(reads.load() > 0);
  for (int i = 0; i < ids; ++i) {
    REQUIRE(r.find(id_of(i)));
    CHECK(r.find(id_of(i))->product.version == last);
    r.remove(id_of(i), 1);
  }
  CHECK(r.size() == 0);
}
