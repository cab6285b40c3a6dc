// Integration tests of persistence/ against the real PostgreSQL and Redis of the test environment
// (EMPORIUM_TEST_PG_URL, EMPORIUM_TEST_REDIS_URL): migrations, the Redis cache client, the seed,
// the admin key, and PostgreSQL sessions with their error mapping and retries. The product store is
// in product_store_pgtest.cpp. The database is shared with other tests: no test assumes empty
// tables, every SKU and category is made unique with test::unique.

#include "persistence/store_support.hpp"

#include "core/ids.hpp"
#include "persistence/cache.hpp"
#include "persistence/credentials.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg.hpp"
#include "persistence/product_store.hpp"
#include "persistence/seed.hpp"
#include "support/test_env.hpp"

#include <hiredis/hiredis.h>
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
using namespace std::chrono_literals;
namespace ps = emporium::persistence::product_store;
using persistence::pg_session;
using namespace emporium::test::store_pg;

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
    auto n = tx.exec_params("SELECT count(*) FROM schema_migrations WHERE version = $1",
                            m.version)[0][0]
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

namespace {

/// The test Redis under another database number: a redis_cache state (breaker, pending
/// invalidations) of its own, apart from every other test's.
std::string redis_db_url(int db) {
  auto url = test::redis_url();
  return url.substr(0, url.rfind('/') + 1) + std::to_string(db);
}

/// A plain connection to `url`, beside the cache under test: what Redis really holds.
struct raw_redis {
  explicit raw_redis(const std::string& url) {
    std::string error;
    ctx = persistence::connect_redis(persistence::parse_redis_url(url), 2000ms, error);
    REQUIRE(ctx);
  }
  ~raw_redis() { redisFree(ctx); }
  /// The answer as text: a string's value, "(nil)", "OK", an integer, or "error: ...".
  std::string run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
    REQUIRE(r);
    std::string out = r->type == REDIS_REPLY_NIL       ? "(nil)"
                      : r->type == REDIS_REPLY_INTEGER ? std::to_string(r->integer)
                      : r->type == REDIS_REPLY_ERROR   ? "error: " + std::string(r->str, r->len)
                                                       : std::string(r->str, r->len);
    freeReplyObject(r);
    return out;
  }
  redisContext* ctx = nullptr;
};

} // namespace

TEST_CASE("redis_cache: a key whose write failed is not read until Redis deleted it",
          "[pg][cache]") {
  auto url = redis_db_url(3);
  raw_redis raw{url};
  // A breaker that never opens here: every call goes to Redis, as when it is back.
  persistence::redis_cache c{persistence::redis_options{url, 200, 1000, 1000}};
  auto key = "emporium:test:" + test::unique("inval");
  auto other = "emporium:test:" + test::unique("other");
  REQUIRE(raw.run({"SET", key, "old", "EX", "60"}) == "OK");
  REQUIRE(raw.run({"SET", other, "kept", "EX", "60"}) == "OK");
  REQUIRE(c.get(key) == "old");

  // Writes wait (then time out) while reads are served: Redis keeps "old", the write of the
  // new value fails, as when Redis is lost between a commit and its cache write.
  REQUIRE(raw.run({"CLIENT", "PAUSE", "3000", "WRITE"}) == "OK");
  CHECK_FALSE(c.set(key, "new", 60));
  CHECK(raw.run({"GET", key}) == "old");
  // Redis would answer "old", but the key waits for its invalidation: a miss, never "old".
  CHECK_FALSE(c.get(key));
  CHECK_FALSE(c.get(key));

  REQUIRE(raw.run({"CLIENT", "UNPAUSE"}) == "OK");
  // The first connection that works deletes the key before it reads anything.
  CHECK(c.get(other) == "kept");
  CHECK(raw.run({"GET", key}) == "(nil)");
  CHECK(raw.run({"GET", other}) == "kept");
  // Then the key is an ordinary one again.
  CHECK(c.set(key, "fresh", 60));
  CHECK(c.get(key) == "fresh");
  raw.run({"DEL", key, other});
}

TEST_CASE("redis_cache: beyond its bound of pending invalidations, every read bypasses Redis",
          "[pg][cache]") {
  auto url = redis_db_url(4);
  raw_redis raw{url};
  // A breaker that opens at the first failure, for 3 s: the writes after it are not even tried
  // (were Redis reachable, each new connection would delete the keys recorded so far).
  persistence::redis_cache c{persistence::redis_options{url, 200, 1, 3000}};
  auto other = "emporium:test:" + test::unique("other");
  REQUIRE(raw.run({"SET", other, "kept", "EX", "60"}) == "OK");
  REQUIRE(c.get(other) == "kept");
  // A zero time to live is an error answer: the first write fails and opens the breaker, and
  // every write of another key after it fails at once.
  for (std::size_t i = 0; i <= persistence::max_pending_invalidations; ++i)
    CHECK_FALSE(c.set("emporium:test:overflow:" + std::to_string(i), "v", 0));
  std::this_thread::sleep_for(3100ms); // the breaker's open period
  // The recorded keys are deleted, but one failed write could not be recorded: Redis is not
  // read for longest_stale_s, whatever the key.
  CHECK_FALSE(c.get(other));
  CHECK(raw.run({"GET", other}) == "kept");
  CHECK(c.ping());
  raw.run({"DEL", other});
}

TEST_CASE(
  "redis_cache against a closed port degrades to misses, and stops trying once its "
  "breaker opens",
  "[pg][cache]") {
  // Three failures open the breaker; it stays open longer than the test runs.
  persistence::redis_cache c{persistence::redis_options{"redis://127.0.0.1:1/0", 200, 3, 60'000}};
  auto errors_before = persistence::cache_stats().errors.load();
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(c.get("emporium:test:any"));
    CHECK_FALSE(c.set("emporium:test:any", "v", 10));
    CHECK_FALSE(c.del("emporium:test:any"));
    CHECK_FALSE(c.ping());
  }
  // Twelve calls, three attempts: after the breaker opened, the calls did not try Redis.
  CHECK(persistence::cache_stats().errors.load() - errors_before == 3);
}

TEST_CASE("redis_cache against a server that never answers gives up after its timeout, once",
          "[pg][cache]") {
  silent_listener hung;
  // A breaker that opens on the first failure and stays open longer than the test runs: one
  // command timeout, then Redis is bypassed.
  persistence::redis_cache c{persistence::redis_options{
    "redis://127.0.0.1:" + std::to_string(hung.port) + "/0", 200, 1, 60'000}};
  auto errors_before = persistence::cache_stats().errors.load();
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(c.get("emporium:test:any"));
    CHECK_FALSE(c.set("emporium:test:any", "v", 10));
    CHECK_FALSE(c.del("emporium:test:any"));
  }
  // The calls came back (each attempt is bounded by the 200 ms timeout), and only the first
  // tried: one connection to the hung server, one failure.
  CHECK(hung.connections() == 1);
  CHECK(persistence::cache_stats().errors.load() - errors_before == 1);
}

// -- seed ---------------------------------------------------------------------------------------

TEST_CASE("seed_catalog inserts the requested number of varied, valid products", "[pg][seed]") {
  ensure_schema();
  pg_session s{pg_opts()};
  constexpr std::int64_t n = 2000;
  auto before = scalar(s, "SELECT count(*) FROM products");
  // new_id is monotonic within the process: every id seed_catalog makes sorts between these.
  auto lo = core::new_id("prod");
  persistence::seed_options opts;
  opts.products = n;
  opts.if_empty = false;
  opts.random_seed = static_cast<std::uint32_t>(::getpid());
  auto inserted = persistence::seed_catalog(s, opts);
  auto hi = core::new_id("prod");
  auto after = scalar(s, "SELECT count(*) FROM products");
  CHECK(inserted == n);
  // >= rather than ==: the database is shared with tests that may insert meanwhile.
  CHECK(after - before >= n);

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
      CHECK(core::is_valid_id(id, "prod"));
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
  CHECK(std::adjacent_find(ids.begin(), ids.end(),
                           [](const auto& a, const auto& b) { return !(a < b); })
        == ids.end()); // increasing, hence distinct
  CHECK(static_cast<std::int64_t>(names.size()) > n / 4);
  CHECK(categories.size() >= 10);
  CHECK(sold_out > n / 40); // about a tenth is sold out
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
  auto removed = tx.exec_params(
                     "DELETE FROM products WHERE id > $1 AND id < $2 AND sku LIKE 'SEED-%'", lo, hi)
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
  CHECK(other.key_hash == core::sha256_hex(key));
  CHECK_FALSE(other.generated);
}

TEST_CASE("ensure_admin_key with a configured key needs no database", "[pg][credentials]") {
  pg_session unreachable{
    persistence::pg_options{"postgresql://emporium@127.0.0.1:1/x", 2'000, 5'000}};
  auto state = persistence::ensure_admin_key(unreachable, std::string{"configured"});
  CHECK(state.key_hash == core::sha256_hex("configured"));
  CHECK_FALSE(state.generated);
}

TEST_CASE("ensure_admin_key without a configured key keeps one stored key", "[pg][credentials]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto first = persistence::ensure_admin_key(s, std::nullopt);
  CHECK(first.key_hash.size() == 64);
  if (first.generated) {
    CHECK(first.generated->size() == 64);
    CHECK(core::sha256_hex(*first.generated) == first.key_hash);
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
}

TEST_CASE("pg_session against a server that never answers gives up after the connect timeout",
          "[pg][session]") {
  silent_listener hung;
  constexpr double connect_timeout_s = 2.0; // libpq's connect_timeout: whole seconds, at least 2
  pg_session s{persistence::pg_options{
    "postgresql://emporium@127.0.0.1:" + std::to_string(hung.port) + "/x", 2'000, 5'000}};
  auto t0 = clock_type::now();
  CHECK_THROWS_AS(s.connection(), pqxx::broken_connection);
  auto took = seconds_since(t0);
  INFO("gave up after " << took << " s");
  // It was the timeout that ended the attempt (the server accepted and never answered), and the
  // deadline bounds it: one attempt, one timeout.
  CHECK(took >= connect_timeout_s - 0.1);
  CHECK(took < 2 * connect_timeout_s);
  CHECK(hung.connections() == 1);
  CHECK_FALSE(s.connected());
}

TEST_CASE("pg_session applies the statement timeout, and a timeout maps to unavailable",
          "[pg][session]") {
  ensure_schema();
  pg_session s{persistence::pg_options{test::pg_url(), 2'000, 300}};
  bool thrown = false;
  try {
    pqxx::nontransaction tx{s.connection()};
    tx.exec("SELECT pg_sleep(3)");
  } catch (const pqxx::sql_error& e) {
    thrown = true;
    CHECK(e.sqlstate() == "57014");
    CHECK(persistence::to_failure(e).code == errc::unavailable);
  }
  CHECK(thrown); // 57014: cancelled by the statement timeout, not run to its end
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
