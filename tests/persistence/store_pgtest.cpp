// Integration tests of persistence/ against the real PostgreSQL and Redis of the test environment
// (EMPORIUM_TEST_PG_URL, EMPORIUM_TEST_REDIS_URL). The database is shared with other tests: no
// test assumes empty tables, every SKU and category is made unique with test::unique.

#include "persistence/cache.hpp"
#include "persistence/credentials.hpp"
#include "persistence/ids.hpp"
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

namespace {

persistence::pg_options pg_opts() {
  return persistence::pg_options{test::pg_url(), 2'000, 5'000};
}

/// Brings the schema up to date once per process (the CI database starts empty).
void ensure_schema() {
  static std::once_flag once;
  std::call_once(once, [] {
    pg_session s{pg_opts()};
    persistence::migrate(s);
  });
}

model::product_draft make_draft(const std::string& category = "pgtest") {
  model::product_draft d;
  d.sku = test::unique("SKU");
  d.name = "Test Lamp " + d.sku;
  d.description = "A lamp for integration tests — with ünïcode";
  d.price_cents = 2599;
  d.currency = "EUR";
  d.category = category;
  d.stock = 7;
  d.weight_grams = 350;
  d.images = {"https://images.example.com/a.jpg", "https://images.example.com/b.jpg"};
  return d;
}

void check_same(const model::product& a, const model::product& b) {
  CHECK(a.id == b.id);
  CHECK(a.sku == b.sku);
  CHECK(a.name == b.name);
  CHECK(a.description == b.description);
  CHECK(a.price_cents == b.price_cents);
  CHECK(a.currency == b.currency);
  CHECK(a.category == b.category);
  CHECK(a.stock == b.stock);
  CHECK(a.weight_grams == b.weight_grams);
  CHECK(a.images == b.images);
  CHECK(a.version == b.version);
  CHECK(a.created_at_ms == b.created_at_ms);
  CHECK(a.updated_at_ms == b.updated_at_ms);
}

model::product insert_committed(pg_session& s, const model::product_draft& d) {
  pqxx::work tx{s.connection()};
  auto p = ps::insert(tx, persistence::new_id("prod"), d);
  tx.commit();
  return p;
}

std::optional<model::product> find_committed(pg_session& s, const std::string& id) {
  pqxx::read_transaction tx{s.connection()};
  auto p = ps::find(tx, id);
  tx.commit();
  return p;
}

std::int64_t scalar(pg_session& s, const std::string& sql) {
  pqxx::nontransaction tx{s.connection()};
  return tx.exec(sql)[0][0].as<std::int64_t>();
}

/// A TCP port that accepts connections (the kernel completes the handshake into the backlog)
/// but never reads or answers: a hung server.
struct silent_listener {
  int fd = -1;
  int port = 0;
  silent_listener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof(addr);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }
  ~silent_listener() {
    if (fd >= 0)
      ::close(fd);
  }
};

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

} // namespace

// -- migrations ---------------------------------------------------------------------------------

TEST_CASE("migrate is idempotent and leaves the schema at the newest version", "[pg][migrations]") {
  pg_session s{pg_opts()};
  persistence::migrate(s); // whatever was pending
  auto again = persistence::migrate(s);
  CHECK(again.empty());
  REQUIRE_FALSE(persistence::migrations().empty());
  CHECK(persistence::schema_version(s) == persistence::migrations().back().version);
  // Every known migration is recorded exactly once.
  for (const auto& m : persistence::migrations()) {
    pqxx::nontransaction tx{s.connection()};
    auto n = tx.exec_params("SELECT count(*) FROM schema_migrations WHERE version = $1", m.version)[0][0]
               .as<int>();
    CHECK(n == 1);
  }
}

TEST_CASE("migrations are listed in strictly increasing version order", "[pg][migrations]") {
  const auto& all = persistence::migrations();
  for (std::size_t i = 1; i < all.size(); ++i)
    CHECK(all[i - 1].version < all[i].version);
}

TEST_CASE("two nodes migrating at once both succeed and apply nothing twice", "[pg][migrations]") {
  ensure_schema();
  std::vector<int> applied_a, applied_b;
  std::exception_ptr err_a, err_b;
  std::thread a{[&] {
    try {
      pg_session s{pg_opts()};
      applied_a = persistence::migrate(s);
    } catch (...) {
      err_a = std::current_exception();
    }
  }};
  std::thread b{[&] {
    try {
      pg_session s{pg_opts()};
      applied_b = persistence::migrate(s);
    } catch (...) {
      err_b = std::current_exception();
    }
  }};
  a.join();
  b.join();
  CHECK_FALSE(err_a);
  CHECK_FALSE(err_b);
  CHECK(applied_a.empty());
  CHECK(applied_b.empty());
  pg_session s{pg_opts()};
  CHECK(persistence::schema_version(s) == persistence::migrations().back().version);
}

// -- product_store ------------------------------------------------------------------------------

TEST_CASE("product_store inserts and finds a product with every field", "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto d = make_draft();
  auto id = persistence::new_id("prod");
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

  CHECK_FALSE(find_committed(s, persistence::new_id("prod")));
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
    ghost.id = persistence::new_id("prod");
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
    ps::insert(tx, persistence::new_id("prod"), again);
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
      ps::insert(tx, persistence::new_id("prod"), d);
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

// -- cache --------------------------------------------------------------------------------------

TEST_CASE("redis_cache set, get and del round-trip", "[pg][cache]") {
  persistence::redis_cache c{persistence::redis_options{test::redis_url(), 500}};
  CHECK(c.ping());
  auto key = "emporium:test:" + test::unique("k");
  CHECK_FALSE(c.get(key));
  std::string value = std::string("binary\0safe \xff value", 19);
  REQUIRE(c.set(key, value, 60));
  auto got = c.get(key);
  REQUIRE(got);
  CHECK(*got == value);
  REQUIRE(c.set(key, "second", 60));
  CHECK(c.get(key) == std::optional<std::string>{"second"});
  CHECK(c.del(key));
  CHECK_FALSE(c.get(key));
  CHECK(c.del(key)); // deleting a missing key is no error
}

TEST_CASE("redis_cache values expire after their time to live", "[pg][cache]") {
  persistence::redis_cache c{persistence::redis_options{test::redis_url(), 500}};
  auto key = "emporium:test:" + test::unique("ttl");
  REQUIRE(c.set(key, "short-lived", 1));
  CHECK(c.get(key));
  std::this_thread::sleep_for(std::chrono::milliseconds(2'100));
  CHECK_FALSE(c.get(key));
}

TEST_CASE("the product cache encoding round-trips", "[pg][cache]") {
  model::product p;
  p.id = persistence::new_id("prod");
  p.sku = "SKU-\"quoted\"-\\";
  p.name = "Ünïcode ☕ name";
  p.description = "line1\nline2\t\x01";
  p.price_cents = 9'007'199'254'740'993LL; // beyond double precision
  p.currency = "JPY";
  p.category = "kitchen";
  p.stock = 1'000'000'000;
  p.weight_grams = 0;
  p.images = {"a", "", "c"};
  p.version = 42;
  p.created_at_ms = 1'700'000'000'123;
  p.updated_at_ms = 1'700'000'999'456;
  auto decoded = ps::decode(ps::encode(p));
  REQUIRE(decoded);
  check_same(*decoded, p);

  model::product empty;
  auto decoded_empty = ps::decode(ps::encode(empty));
  REQUIRE(decoded_empty);
  check_same(*decoded_empty, empty);

  CHECK(ps::cache_key(p.id) == "emporium:product:" + p.id);
}

TEST_CASE("decoding a malformed cache value is a miss", "[pg][cache]") {
  model::product p;
  p.id = "prod_x";
  p.sku = "S";
  p.name = "N";
  p.currency = "EUR";
  p.version = 3;
  auto good = ps::encode(p);
  REQUIRE(ps::decode(good));

  auto replaced = [&good](const std::string& from, const std::string& to) {
    auto text = good;
    auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    return text;
  };

  CHECK_FALSE(ps::decode(""));
  CHECK_FALSE(ps::decode("garbage"));
  CHECK_FALSE(ps::decode("\xff\xfe\x00\x01"));
  CHECK_FALSE(ps::decode("null"));
  CHECK_FALSE(ps::decode("42"));
  CHECK_FALSE(ps::decode("\"a string\""));
  CHECK_FALSE(ps::decode("[1,2,3]"));
  CHECK_FALSE(ps::decode("{}"));
  CHECK_FALSE(ps::decode(good.substr(0, good.size() / 2)));        // truncated
  CHECK_FALSE(ps::decode(replaced("\"version\":3,", "")));          // a field missing
  CHECK_FALSE(ps::decode(replaced("\"version\":3", "\"version\":\"3\"")));  // wrong type
  CHECK_FALSE(ps::decode(replaced("\"name\":\"N\"", "\"name\":7")));        // wrong type
  CHECK_FALSE(ps::decode(replaced("\"images\":[]", "\"images\":[1]")));     // wrong element type
}

TEST_CASE("redis_cache against a closed port degrades to misses at once", "[pg][cache]") {
  persistence::redis_cache c{persistence::redis_options{"redis://127.0.0.1:1/0", 200}};
  auto t0 = clock_type::now();
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(c.get("emporium:test:any"));
    CHECK_FALSE(c.set("emporium:test:any", "v", 10));
    CHECK_FALSE(c.del("emporium:test:any"));
    CHECK_FALSE(c.ping());
  }
  // A sanity bound against a hang, not a benchmark.
  CHECK(seconds_since(t0) < 1.0);
}

TEST_CASE("redis_cache against a server that never answers gives up after its timeout",
          "[pg][cache]") {
  silent_listener hung;
  // A breaker that opens on the first failure: one command timeout, then Redis is bypassed.
  persistence::redis_cache c{persistence::redis_options{
    "redis://127.0.0.1:" + std::to_string(hung.port) + "/0", 200, 1, 1000}};
  auto t0 = clock_type::now();
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(c.get("emporium:test:any"));
    CHECK_FALSE(c.set("emporium:test:any", "v", 10));
    CHECK_FALSE(c.del("emporium:test:any"));
  }
  // One command timeout (200 ms), then the open circuit answers at once: far below 1 s.
  CHECK(seconds_since(t0) < 1.0);
}

// -- seed ---------------------------------------------------------------------------------------

TEST_CASE("seed_catalog inserts the requested number of varied, valid products", "[pg][seed]") {
  ensure_schema();
  pg_session s{pg_opts()};
  constexpr std::int64_t n = 2000;
  auto before = scalar(s, "SELECT count(*) FROM products");
  // new_id is monotonic within the process: every id seed_catalog makes sorts between these.
  auto lo = persistence::new_id("prod");
  persistence::seed_options opts;
  opts.products = n;
  opts.if_empty = false;
  opts.random_seed = static_cast<std::uint32_t>(::getpid());
  auto t0 = clock_type::now();
  auto inserted = persistence::seed_catalog(s, opts);
  auto took = seconds_since(t0);
  auto hi = persistence::new_id("prod");
  auto after = scalar(s, "SELECT count(*) FROM products");
  CHECK(inserted == n);
  // >= rather than ==: the database is shared with tests that may insert meanwhile.
  CHECK(after - before >= n);
  CHECK(took < 60.0);

  std::vector<std::string> ids;
  std::set<std::string> names, categories;
  std::int64_t sold_out = 0;
  {
    pqxx::read_transaction tx{s.connection()};
    auto rows = tx.exec_params(
      "SELECT id, sku, name, category, stock, price_cents, currency, description, images::text "
      "FROM products WHERE id > $1 AND id < $2 AND sku LIKE 'SEED-%' ORDER BY id",
      lo, hi);
    for (const auto& r : rows) {
      auto id = r[0].as<std::string>();
      ids.push_back(id);
      CHECK(persistence::is_valid_id(id, "prod"));
      CHECK(r[1].as<std::string>() == "SEED-" + id.substr(5));
      names.insert(r[2].as<std::string>());
      categories.insert(r[3].as<std::string>());
      auto stock = r[4].as<std::int64_t>();
      CHECK(stock >= 0);
      sold_out += stock == 0;
      CHECK(r[5].as<std::int64_t>() % 100 == 99);
      CHECK(r[6].as<std::string>() == "USD");
      CHECK_FALSE(r[7].as<std::string>().empty());
      CHECK(r[8].as<std::string>().find(id) != std::string::npos);
    }
    tx.commit();
  }
  CHECK(static_cast<std::int64_t>(ids.size()) == n);
  CHECK(std::adjacent_find(ids.begin(), ids.end(), [](const auto& a, const auto& b) {
          return !(a < b);
        }) == ids.end()); // increasing, hence distinct
  CHECK(static_cast<std::int64_t>(names.size()) > n / 4);
  CHECK(categories.size() >= 10);
  CHECK(sold_out > n / 40);  // about a tenth is sold out
  CHECK(sold_out < n / 4);

  // The seeded rows are readable through product_store as well.
  REQUIRE_FALSE(ids.empty());
  auto first = find_committed(s, ids.front());
  REQUIRE(first);
  CHECK(first->version == 1);
  CHECK(first->images.size() == 1);

  // if_empty on a catalog that is not empty does nothing.
  persistence::seed_options again;
  again.products = 10;
  again.if_empty = true;
  CHECK(persistence::seed_catalog(s, again) == 0);

  // Leave the shared database as we found it.
  pqxx::work tx{s.connection()};
  auto removed = tx.exec_params("DELETE FROM products WHERE id > $1 AND id < $2 AND sku LIKE 'SEED-%'",
                                lo, hi)
                   .affected_rows();
  tx.commit();
  CHECK(static_cast<std::int64_t>(removed) == n);
}

TEST_CASE("seed_catalog with zero products inserts nothing", "[pg][seed]") {
  ensure_schema();
  pg_session s{pg_opts()};
  persistence::seed_options opts;
  opts.products = 0;
  CHECK(persistence::seed_catalog(s, opts) == 0);
}

// -- credentials --------------------------------------------------------------------------------

TEST_CASE("ensure_admin_key with a configured key answers its sha256 and generates nothing",
          "[pg][credentials]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto state = persistence::ensure_admin_key(s, std::string{"abc"});
  // The SHA-256 test vector of "abc" (FIPS 180-2).
  CHECK(state.key_hash == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK_FALSE(state.generated);

  auto key = test::unique("admin-key");
  auto other = persistence::ensure_admin_key(s, key);
  CHECK(other.key_hash == persistence::sha256_hex(key));
  CHECK_FALSE(other.generated);
}

TEST_CASE("ensure_admin_key with a configured key needs no database", "[pg][credentials]") {
  pg_session unreachable{persistence::pg_options{"postgresql://emporium@127.0.0.1:1/x", 2'000, 5'000}};
  auto state = persistence::ensure_admin_key(unreachable, std::string{"configured"});
  CHECK(state.key_hash == persistence::sha256_hex("configured"));
  CHECK_FALSE(state.generated);
}

TEST_CASE("ensure_admin_key without a configured key keeps one stored key", "[pg][credentials]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto first = persistence::ensure_admin_key(s, std::nullopt);
  CHECK(first.key_hash.size() == 64);
  if (first.generated) {
    CHECK(first.generated->size() == 64);
    CHECK(persistence::sha256_hex(*first.generated) == first.key_hash);
  }
  auto second = persistence::ensure_admin_key(s, std::nullopt);
  CHECK(second.key_hash == first.key_hash);
  CHECK_FALSE(second.generated);
  if (first.generated) {
    // The key was ours: leave the database as a server's first start expects to find it.
    pqxx::work tx{s.connection()};
    tx.exec_params("DELETE FROM admin_credentials WHERE id = 1 AND key_hash = $1", first.key_hash);
    tx.commit();
  }
}

// -- sessions and error mapping -----------------------------------------------------------------

TEST_CASE("pg_session against a closed port throws broken_connection, mapped to unavailable",
          "[pg][session]") {
  pg_session s{persistence::pg_options{"postgresql://emporium@127.0.0.1:1/x", 2'000, 5'000}};
  auto t0 = clock_type::now();
  bool thrown = false;
  try {
    s.connection();
  } catch (const pqxx::broken_connection& e) {
    thrown = true;
    CHECK(persistence::to_failure(e).code == errc::unavailable);
    CHECK(persistence::breaks_connection(e));
  }
  CHECK(thrown);
  CHECK_FALSE(s.connected());
  CHECK(seconds_since(t0) < 5.0);
}

TEST_CASE("pg_session against a server that never answers gives up after the connect timeout",
          "[pg][session]") {
  silent_listener hung;
  pg_session s{persistence::pg_options{
    "postgresql://emporium@127.0.0.1:" + std::to_string(hung.port) + "/x", 2'000, 5'000}};
  auto t0 = clock_type::now();
  CHECK_THROWS_AS(s.connection(), pqxx::broken_connection);
  auto took = seconds_since(t0);
  CHECK(took < 6.0); // libpq's connect_timeout is whole seconds, at least 2
  CHECK_FALSE(s.connected());
}

TEST_CASE("pg_session applies the statement timeout, and a timeout maps to unavailable",
          "[pg][session]") {
  ensure_schema();
  pg_session s{persistence::pg_options{test::pg_url(), 2'000, 300}};
  bool thrown = false;
  auto t0 = clock_type::now();
  try {
    pqxx::nontransaction tx{s.connection()};
    tx.exec("SELECT pg_sleep(3)");
  } catch (const pqxx::sql_error& e) {
    thrown = true;
    CHECK(e.sqlstate() == "57014");
    CHECK(persistence::to_failure(e).code == errc::unavailable);
  }
  CHECK(thrown);
  CHECK(seconds_since(t0) < 2.5);
  // The session survives a cancelled statement.
  pqxx::nontransaction tx{s.connection()};
  CHECK(tx.exec("SELECT 1")[0][0].as<int>() == 1);
}

TEST_CASE("pg_session reconnects after drop", "[pg][session]") {
  ensure_schema();
  pg_session s{pg_opts()};
  {
    pqxx::nontransaction tx{s.connection()};
    CHECK(tx.exec("SELECT 1")[0][0].as<int>() == 1);
  }
  CHECK(s.connected());
  s.drop();
  CHECK_FALSE(s.connected());
  pqxx::nontransaction tx{s.connection()};
  CHECK(tx.exec("SELECT 2")[0][0].as<int>() == 2);
  CHECK(s.connected());
}

TEST_CASE("format_rfc3339 formats UTC with milliseconds", "[pg][session]") {
  CHECK(persistence::format_rfc3339(0) == "1970-01-01T00:00:00.000Z");
  CHECK(persistence::format_rfc3339(1'700'000'000'123) == "2023-11-14T22:13:20.123Z");
  CHECK(persistence::format_rfc3339(-1) == "1969-12-31T23:59:59.999Z");
}

// A limit of 0 answers an empty page rather than reading past it.
TEST_CASE("product_store list with limit 0 answers an empty page", "[pg][products]") {
  ensure_schema();
  pg_session s{pg_opts()};
  insert_committed(s, make_draft()); // at least one row
  pqxx::read_transaction tx{s.connection()};
  model::product_query q;
  q.limit = 0;
  // KNOWN BUG: list() fetches limit + 1 = 1 row, sees items.size() == limit (0) on the first
  // row and reads page.items.back() of an empty vector: SIGSEGV. runtime::list_products passes
  // the query through unchecked; only the HTTP layer keeps limit within 1..100.
  auto page = ps::list(tx, q);
  CHECK(page.items.empty());
}
