// Retention (persistence/retention_store.cpp) against the real PostgreSQL of the test
// environment. The database is shared: every row here is new, and the checks look at these
// rows only (older rows of other tests may be deleted too, which is the point of retention).

#include "core/ids.hpp"
#include "persistence/customer_store.hpp"
#include "persistence/migrations.hpp"
#include "persistence/order_store.hpp"
#include "persistence/pg.hpp"
#include "persistence/retention_store.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace emporium;
namespace rs = emporium::persistence::retention_store;
namespace cs = emporium::persistence::order_store;
namespace customers = emporium::persistence::customer_store;
using persistence::pg_session;

namespace {

persistence::pg_options pg_opts() {
  return persistence::pg_options{test::pg_url(), 2'000, 5'000};
}

/// Rows aged relative to now(), by an interval such as '25 hours' (a constant of this file).
struct fixture {
  pg_session s{pg_opts()};
  std::string customer = core::new_id("cust");

  fixture() {
    persistence::migrate(s);
    pqxx::work tx{s.connection()};
    customers::insert_customer(tx, customer, test::unique("ret") + "@example.com", "Retention",
                               "x");
    tx.commit();
  }

  void exec(const std::string& sql, const std::string& a, const std::string& b) {
    pqxx::work tx{s.connection()};
    tx.exec_params(sql, a, b);
    tx.commit();
  }

  std::string session(const std::string& expired_ago) {
    auto token = core::new_id("tok");
    exec(
      "INSERT INTO sessions (token_hash, customer_id, expires_at) "
      "VALUES ($1, '"
        + customer + "', now() - $2::interval)",
      token, expired_ago);
    return token;
  }

  std::string cart(const std::string& expired_ago, bool checked_out) {
    auto id = core::new_id("cart");
    exec("INSERT INTO carts (id, customer_id, expires_at, order_id) VALUES ($1, '" + customer
           + "', now() - $2::interval, " + (checked_out ? "'ord_gone'" : "NULL") + ")",
         id, expired_ago);
    return id;
  }

  std::string idempotency_key(const std::string& age) {
    auto key = test::unique("key");
    exec(
      "INSERT INTO idempotency_keys (customer_id, key, request_hash, status, outcome, "
      "created_at) VALUES ('"
        + customer + "', $1, 'h', 201, '{}', now() - $2::interval)",
      key, age);
    return key;
  }

  std::string event(const std::string& age) {
    auto entity = "order:" + core::new_id("ord");
    exec(
      "INSERT INTO events (entity, seq, type, payload, created_at) "
      "VALUES ($1, 1, 'order_status', '{}', now() - $2::interval)",
      entity, age);
    return entity;
  }

  bool exists(const std::string& sql, const std::string& arg) {
    pqxx::read_transaction tx{s.connection()};
    return !tx.exec_params(sql, arg).empty();
  }

  /// Runs retention to the end (full batches go on), as the service does.
  void purge_all(const rs::limits& l) {
    for (int i = 0; i < 1000; ++i) {
      pqxx::work tx{s.connection()};
      auto r = rs::purge(tx, l);
      tx.commit();
      REQUIRE(r.ran);
      if (!r.more(l.batch_size))
        return;
    }
    FAIL("retention never finished");
  }
};

const char* session_sql = "SELECT 1 FROM sessions WHERE token_hash = $1";
const char* cart_sql = "SELECT 1 FROM carts WHERE id = $1";
const char* key_sql = "SELECT 1 FROM idempotency_keys WHERE key = $1";
const char* event_sql = "SELECT 1 FROM events WHERE entity = $1";

} // namespace

TEST_CASE("retention deletes what is past its limit and keeps what is not", "[pg][retention]") {
  fixture f;
  auto old_session = f.session("25 hours");
  auto recent_session = f.session("23 hours"); // expired, but within the grace
  auto live_session = f.session("-1 hour");
  auto old_cart = f.cart("25 hours", false);
  auto recent_cart = f.cart("23 hours", false);
  auto used_cart = f.cart("30 days", true); // checked out: names its order
  auto old_key = f.idempotency_key("49 hours");
  auto recent_key = f.idempotency_key("47 hours");
  auto old_event = f.event("169 hours");
  auto recent_event = f.event("167 hours");

  f.purge_all(rs::limits{24, 48, 168, 3});

  CHECK_FALSE(f.exists(session_sql, old_session));
  CHECK(f.exists(session_sql, recent_session));
  CHECK(f.exists(session_sql, live_session));
  CHECK_FALSE(f.exists(cart_sql, old_cart));
  CHECK(f.exists(cart_sql, recent_cart));
  CHECK(f.exists(cart_sql, used_cart));
  CHECK_FALSE(f.exists(key_sql, old_key));
  CHECK(f.exists(key_sql, recent_key));
  CHECK_FALSE(f.exists(event_sql, old_event));
  CHECK(f.exists(event_sql, recent_event));
}

TEST_CASE("retention deletes in bounded batches, oldest first", "[pg][retention]") {
  fixture f;
  const rs::limits l{24, 48, 168, 2};
  f.purge_all(l); // whatever older rows other tests left
  auto oldest = f.event("300 hours");
  auto middle = f.event("250 hours");
  auto newest = f.event("200 hours");
  {
    pqxx::work tx{f.s.connection()};
    auto r = rs::purge(tx, l);
    tx.commit();
    REQUIRE(r.ran);
    CHECK(r.events == 2);
    CHECK(r.more(l.batch_size));
  }
  CHECK_FALSE(f.exists(event_sql, oldest));
  CHECK_FALSE(f.exists(event_sql, middle));
  CHECK(f.exists(event_sql, newest));
  pqxx::work tx{f.s.connection()};
  auto r = rs::purge(tx, l);
  tx.commit();
  CHECK(r.events == 1);
  CHECK_FALSE(r.more(l.batch_size));
  CHECK_FALSE(f.exists(event_sql, newest));
}

TEST_CASE(
  "retention runs on one node at a time: a second runner skips while the first holds "
  "the lock",
  "[pg][retention]") {
  fixture f;
  pg_session other{pg_opts()};
  auto old_event = f.event("169 hours");
  const rs::limits l{24, 48, 168, 1000};

  pqxx::work first{f.s.connection()};
  auto a = rs::purge(first, l);
  REQUIRE(a.ran);
  {
    pqxx::work second{other.connection()};
    auto b = rs::purge(second, l);
    CHECK_FALSE(b.ran);
    CHECK(b.events == 0);
    second.commit();
  }
  first.commit();
  CHECK_FALSE(f.exists(event_sql, old_event));

  // The lock ends with the transaction that took it: the next run goes ahead.
  pqxx::work third{other.connection()};
  CHECK(rs::purge(third, l).ran);
  third.commit();
}
