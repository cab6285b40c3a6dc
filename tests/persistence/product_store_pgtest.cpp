// Integration tests of the product store (persistence/product_store.hpp) against the real
// PostgreSQL of the test environment (EMPORIUM_TEST_PG_URL): inserts, finds, versioned updates,
// constraints and keyset paging. The database is shared with other tests: no test assumes empty
// tables, every SKU and category is made unique with test::unique.

#include "persistence/store_support.hpp"

#include "core/ids.hpp"
#include "persistence/backend.hpp"
#include "persistence/cache.hpp"
#include "persistence/credentials.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg.hpp"
#include "persistence/product_store.hpp"
#include "persistence/seed.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace emporium;
namespace ps = emporium::persistence::product_store;
using persistence::pg_session;
using namespace emporium::test::store_pg;

// -- product_store ------------------------------------------------------------------------------

TEST_CASE("product_store inserts and finds a product with every field", "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto d = make_draft();
  auto id = core::new_id("prod");
  model::product inserted;
  {
    pqxx::work tx{s.connection()};
    inserted = ps::insert(tx, id, d);
    tx.commit();
  }
  CHECK(inserted.id == id);
  CHECK(inserted.sku == d.sku);
  CHECK(inserted.name == d.name);
  CHECK(inserted.description == d.description);
  CHECK(inserted.price_cents == d.price_cents);
  CHECK(inserted.currency == d.currency);
  CHECK(inserted.category == d.category);
  CHECK(inserted.stock == d.stock);
  CHECK(inserted.weight_grams == d.weight_grams);
  CHECK(inserted.images == d.images);
  CHECK(inserted.version == 1);
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  CHECK(inserted.created_at_ms > now_ms - 60'000);
  CHECK(inserted.created_at_ms <= now_ms + 60'000);
  CHECK(inserted.updated_at_ms == inserted.created_at_ms);

  auto found = find_committed(s, id);
  REQUIRE(found);
  check_same(*found, inserted);

  CHECK_FALSE(find_committed(s, core::new_id("prod")));
}

TEST_CASE("product_store loads several products in one statement, each id answered in order",
          "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto first_draft = make_draft();
  auto second_draft = make_draft();
  second_draft.stock = 3;
  model::product first, second;
  {
    pqxx::work tx{s.connection()};
    first = ps::insert(tx, core::new_id("prod"), first_draft);
    second = ps::insert(tx, core::new_id("prod"), second_draft);
    tx.commit();
  }
  auto unknown = core::new_id("prod");
  persistence::backend b{test::test_settings()};
  // Asked twice, unknown, in an order unlike the rows'.
  std::vector<std::string> ids{second.id, unknown, first.id, second.id};
  std::vector<const std::string*> asked;
  for (const auto& id : ids)
    asked.push_back(&id);
  auto loaded = ps::load_many(b, asked);
  REQUIRE(loaded.size() == 4);
  REQUIRE(loaded[0]);
  check_same(*loaded[0], second);
  CHECK_FALSE(loaded[1]);
  REQUIRE(loaded[2]);
  check_same(*loaded[2], first);
  REQUIRE(loaded[3]);
  check_same(*loaded[3], second);
  // One alone, as an activation that did not batch asks.
  auto alone = ps::load_many(b, {&first.id});
  REQUIRE(alone.size() == 1);
  REQUIRE(alone[0]);
  check_same(*alone[0], first);
}

TEST_CASE("product_store keeps defaults and empty images", "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};
  model::product_draft d;
  d.sku = test::unique("SKU");
  d.name = "Bare";
  d.price_cents = 0;
  d.currency = "USD";
  d.stock = 0;
  auto p = insert_committed(s, d);
  auto found = find_committed(s, p.id);
  REQUIRE(found);
  CHECK(found->description.empty());
  CHECK(found->category == "uncategorized");
  CHECK(found->images.empty());
  CHECK(found->stock == 0);
  CHECK(found->price_cents == 0);
}

TEST_CASE("product_store update checks the expected version", "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto p = insert_committed(s, make_draft());
  REQUIRE(p.version == 1);

  auto next = p;
  next.price_cents = 4999;
  next.stock = 3;
  next.images = {"https://images.example.com/c.jpg"};
  model::product updated;
  {
    pqxx::work tx{s.connection()};
    auto r = ps::update(tx, next, 1);
    REQUIRE(r);
    updated = *r;
    tx.commit();
  }
  CHECK(updated.version == 2);
  CHECK(updated.price_cents == 4999);
  CHECK(updated.stock == 3);
  CHECK(updated.images == next.images);
  CHECK(updated.created_at_ms == p.created_at_ms);
  CHECK(updated.updated_at_ms >= p.updated_at_ms);

  SECTION("a stale version writes nothing") {
    auto stale = updated;
    stale.price_cents = 1;
    stale.name = "should not be written";
    {
      pqxx::work tx{s.connection()};
      CHECK_FALSE(ps::update(tx, stale, 1));
      tx.commit();
    }
    auto found = find_committed(s, p.id);
    REQUIRE(found);
    check_same(*found, updated);
  }

  SECTION("a future version writes nothing either") {
    auto ahead = updated;
    ahead.price_cents = 1;
    {
      pqxx::work tx{s.connection()};
      CHECK_FALSE(ps::update(tx, ahead, 3));
      tx.commit();
    }
    auto found = find_committed(s, p.id);
    REQUIRE(found);
    check_same(*found, updated);
  }

  SECTION("an unknown id writes nothing") {
    auto ghost = updated;
    ghost.id = core::new_id("prod");
    pqxx::work tx{s.connection()};
    CHECK_FALSE(ps::update(tx, ghost, 2));
  }
}

TEST_CASE("product_store rejects a duplicate sku as a unique violation mapped to conflict",
          "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto d = make_draft();
  auto first = insert_committed(s, d);

  auto again = make_draft();
  again.sku = d.sku;
  bool thrown = false;
  try {
    pqxx::work tx{s.connection()};
    ps::insert(tx, core::new_id("prod"), again);
    tx.commit();
  } catch (const pqxx::unique_violation& e) {
    thrown = true;
    auto f = persistence::to_failure(e);
    CHECK(f.code == errc::conflict);
    CHECK_FALSE(persistence::breaks_connection(e));
    CHECK_FALSE(persistence::is_retryable(e));
  }
  CHECK(thrown);

  // Only the first row holds that sku, and the session is still usable afterwards.
  pqxx::nontransaction tx{s.connection()};
  auto n = tx.exec_params("SELECT count(*) FROM products WHERE sku = $1", d.sku)[0][0].as<int>();
  CHECK(n == 1);
  tx.commit();
  auto found = find_committed(s, first.id);
  REQUIRE(found);
  CHECK(found->name == d.name);
}

TEST_CASE("the database rejects a negative stock with a check violation", "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};

  SECTION("on insert") {
    auto d = make_draft();
    d.stock = -1;
    bool thrown = false;
    try {
      pqxx::work tx{s.connection()};
      ps::insert(tx, core::new_id("prod"), d);
      tx.commit();
    } catch (const pqxx::check_violation& e) {
      thrown = true;
      CHECK(persistence::to_failure(e).code == errc::conflict);
    }
    CHECK(thrown);
    pqxx::nontransaction tx{s.connection()};
    CHECK(tx.exec_params("SELECT count(*) FROM products WHERE sku = $1", d.sku)[0][0].as<int>()
          == 0);
  }

  SECTION("on update") {
    auto p = insert_committed(s, make_draft());
    auto next = p;
    next.stock = -5;
    bool thrown = false;
    try {
      pqxx::work tx{s.connection()};
      ps::update(tx, next, p.version);
      tx.commit();
    } catch (const pqxx::check_violation&) {
      thrown = true;
    }
    CHECK(thrown);
    auto found = find_committed(s, p.id);
    REQUIRE(found);
    check_same(*found, p);
  }
}

TEST_CASE("product_store lists with keyset paging in id order", "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto category = test::unique("cat");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(insert_committed(s, make_draft(category)).id);
  // A product of another category must never show up in this category's pages.
  insert_committed(s, make_draft(test::unique("other")));
  REQUIRE(std::is_sorted(ids.begin(), ids.end()));

  SECTION("category filter, pages of two") {
    std::vector<std::string> seen;
    std::optional<std::string> after;
    int pages = 0;
    do {
      pqxx::read_transaction tx{s.connection()};
      model::product_query q;
      q.category = category;
      q.after_id = after;
      q.limit = 2;
      auto page = ps::list(tx, q);
      ++pages;
      REQUIRE(pages <= 5);
      CHECK(page.items.size() <= 2);
      for (const auto& p : page.items) {
        CHECK(p.category == category);
        seen.push_back(p.id);
      }
      if (page.next_after_id) {
        REQUIRE_FALSE(page.items.empty());
        CHECK(*page.next_after_id == page.items.back().id);
      }
      after = page.next_after_id;
    } while (after);
    CHECK(pages == 3);
    CHECK(seen == ids); // each once, in id order
  }

  SECTION("a page exactly as long as what is left has no next cursor") {
    pqxx::read_transaction tx{s.connection()};
    model::product_query q;
    q.category = category;
    q.limit = 5;
    auto page = ps::list(tx, q);
    CHECK(page.items.size() == 5);
    CHECK_FALSE(page.next_after_id);

    q.limit = 4;
    page = ps::list(tx, q);
    CHECK(page.items.size() == 4);
    REQUIRE(page.next_after_id);
    CHECK(*page.next_after_id == ids[3]);

    q.after_id = ids.back();
    page = ps::list(tx, q);
    CHECK(page.items.empty());
    CHECK_FALSE(page.next_after_id);
  }

  SECTION("an unknown category is an empty last page") {
    pqxx::read_transaction tx{s.connection()};
    model::product_query q;
    q.category = test::unique("nothing");
    auto page = ps::list(tx, q);
    CHECK(page.items.empty());
    CHECK_FALSE(page.next_after_id);
  }

  SECTION("without a category, paging from a cursor walks every row once, in id order") {
    // Other tests may insert concurrently; the rows in between are fine, ours must each show
    // up exactly once and the whole walk must be strictly increasing.
    std::vector<std::string> seen;
    std::optional<std::string> after = ids.front();
    for (int pages = 0; pages < 10'000 && after && *after < ids.back(); ++pages) {
      pqxx::read_transaction tx{s.connection()};
      model::product_query q;
      q.after_id = after;
      q.limit = 2;
      auto page = ps::list(tx, q);
      for (const auto& p : page.items)
        seen.push_back(p.id);
      after = page.next_after_id;
    }
    CHECK(std::adjacent_find(seen.begin(), seen.end(),
                             [](const auto& a, const auto& b) { return !(a < b); })
          == seen.end());
    REQUIRE_FALSE(seen.empty());
    CHECK(seen.front() > ids.front());
    for (std::size_t i = 1; i < ids.size(); ++i)
      CHECK(std::count(seen.begin(), seen.end(), ids[i]) == 1);
  }
}

// A limit of 0 must answer an empty page, not read past it.
TEST_CASE("product_store list with limit 0 answers an empty page", "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};
  insert_committed(s, make_draft()); // at least one row
  pqxx::read_transaction tx{s.connection()};
  model::product_query q;
  q.limit = 0;
  // list() fetches limit + 1 = 1 row, and must not take page.items.back() of the empty page as
  // the cursor. runtime::list_products passes the query through unchecked; only the HTTP layer
  // keeps limit within 1..100.
  auto page = ps::list(tx, q);
  CHECK(page.items.empty());
}
