// The product actor's holds (actors/product_actor.cpp): stock held for an order being placed is
// not available to other orders; a hold that its order never confirmed (stock message) nor
// released is given back after entity_env::hold_ttl; a hold its order committed is not given
// back again when that time passes. The actor runs against the test PostgreSQL, with a short
// hold_ttl (production keeps 30 s), and with the node's deadline keeper, which sends the release
// at hold_ttl as it does in the server (without one, CAF's delayed_send would).

#include "actors/product_actor.hpp"
#include "core/ids.hpp"
#include "persistence/product_store.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

namespace {

using namespace emporium;
using namespace emporium::actors;
using namespace std::chrono_literals;

struct product_fixture {
  config::settings settings = test::test_settings();
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  deadline_keeper keeper;
  std::unique_ptr<db_pool> pool;
  model::product stored;
  product_entity_actor product;

  explicit product_fixture(std::int64_t stock) {
    register_types(cfg);
    cfg.set("logger.verbosity", caf::atom("quiet"));
    sys = std::make_unique<caf::actor_system>(cfg);
    pool = std::make_unique<db_pool>(*sys, settings, 1);
    {
      pqxx::connection conn{settings.postgres.url};
      pqxx::work tx{conn};
      model::product_draft d;
      d.sku = test::unique("hold-sku");
      d.name = "Held widget";
      d.price_cents = 300;
      d.currency = "USD";
      d.stock = stock;
      d.weight_grams = 10;
      stored = persistence::product_store::insert(tx, core::new_id("prod"), d);
      tx.commit();
    }
    entity_env env;
    env.pool = pool.get();
    env.db_timeout = std::chrono::seconds(10);
    env.hold_ttl = 300ms;
    env.deadlines = &keeper;
    product = sys->spawn<product_entity>(std::make_shared<const entity_env>(env), stored.id);
  }

  ~product_fixture() {
    caf::anon_send(product, passivate_atom_v);
    product = nullptr;
    pool->stop();
    sys->await_all_actors_done();
  }

  /// Holds `quantity` for `order`: "" when held, else the error's detail.
  std::string reserve(const std::string& order, std::int64_t quantity) {
    caf::scoped_actor self{*sys};
    std::string out = "no answer";
    self->request(product, 10s, product_reserve{stored.id, order, quantity})
      .receive([&](model::reservation&) { out.clear(); },
               [&](caf::error& e) { out = to_failure(e).detail; });
    return out;
  }

  /// Polls reserve(order, quantity) every 50 ms for up to 10 s; whether it succeeded.
  bool reserved_eventually(const std::string& order, std::int64_t quantity) {
    auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until) {
      if (reserve(order, quantity).empty())
        return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
};

} // namespace

TEST_CASE("product holds: a hold whose order never committed is given back after hold_ttl",
          "[pg][product][hold]") {
  product_fixture f{5};
  REQUIRE(f.reserve("ord_first", 3).empty());
  // Held: not available to another order, and holding again for the same order adds nothing.
  CHECK_FALSE(f.reserve("ord_second", 3).empty());
  CHECK(f.reserve("ord_first", 3).empty());
  CHECK(f.reserve("ord_third", 2).empty());
  // ord_first never sends its stock message nor a release: its 3 come back on their own.
  CHECK(f.reserved_eventually("ord_second", 3));
}

TEST_CASE("product holds: a hold its order committed is not given back when hold_ttl passes",
          "[pg][product][hold]") {
  product_fixture f{5};
  REQUIRE(f.reserve("ord_committed", 5).empty());
  // The order committed: the stock is 0 now, at the next version.
  caf::anon_send(f.product, product_stock{f.stored.id, "ord_committed", 0, f.stored.version + 1});
  // Past hold_ttl several times over: nothing came back.
  std::this_thread::sleep_for(1s);
  CHECK_FALSE(f.reserve("ord_later", 1).empty());
}
