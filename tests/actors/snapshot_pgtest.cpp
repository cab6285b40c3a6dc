// The product snapshots through the runtime: published by the product actor before its answer,
// withdrawn when it stops.

#include "actors/runtime_support.hpp"

using namespace emporium;
using namespace emporium::test::runtime_pg;

TEST_CASE("runtime: a product's snapshot is current as soon as each write answers",
          "[pg][runtime][snapshots]") {
  runtime rt{settings()};
  for (int round = 0; round < 10; ++round) {
    auto created = create_ok(rt);
    auto s = rt.current_product(created.id);
    REQUIRE(s);
    check_same(s->product, created);
    auto version = created.version;
    for (int k = 0; k < 5; ++k) {
      auto u = update(rt, created.id, price_patch(1000 + round * 10 + k), version);
      REQUIRE(u);
      version = u->version;
      auto now = rt.current_product(created.id);
      REQUIRE(now);
      CHECK(now->product.version == version);
      CHECK(now->product.price_cents == 1000 + round * 10 + k);
    }
  }
  CHECK(rt.stats().product_snapshots >= 10);
  CHECK_FALSE(rt.current_product(core::new_id("prod")));
}

TEST_CASE(
  "runtime: a passivated or crashed product's snapshot is withdrawn, and its next "
  "activation publishes again",
  "[pg][runtime][snapshots][passivation]") {
  auto s = settings();
  s.actors.idle_timeout_s = 1;
  runtime rt{s};
  auto created = create_ok(rt);
  REQUIRE(rt.current_product(created.id));
  CHECK(rt.stats().product_snapshots >= 1);

  // Watched through the gauge: a read of the snapshot (current_product) is a use of the product,
  // which keeps it active.
  CHECK(eventually([&] { return rt.stats().product_snapshots == 0; }, 5s));
  CHECK_FALSE(rt.current_product(created.id));

  check_same(get_ok(rt, created.id), created); // activation from PostgreSQL
  auto again = rt.current_product(created.id);
  REQUIRE(again);
  check_same(again->product, created);

  auto c = crash(rt, created.id);
  CHECK_FALSE(c);
  CHECK(eventually([&] { return !rt.current_product(created.id); }, 2s));

  // An unknown id publishes nothing.
  auto unknown = core::new_id("prod");
  CHECK_FALSE(get(rt, unknown));
  CHECK_FALSE(rt.current_product(unknown));
}
