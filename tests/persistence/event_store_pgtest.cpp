// The outbox's SQL against the real PostgreSQL: every event of an entity takes the next seq
// (orders, cancellations, PATCHes), the notification leaves only with a commit, and the
// migration that introduced the counters renumbers and backfills what was written before.

#include "actors/runtime_support.hpp"

#include "persistence/event_store.hpp"
#include "persistence/migrations.hpp"
#include "persistence/order_store.hpp"
#include "persistence/pg.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace emporium;
using namespace std::chrono_literals;
using actors::runtime;
namespace es = emporium::persistence::event_store;
namespace os = emporium::persistence::order_store;
using namespace emporium::test::runtime_pg;

namespace {

persistence::pg_options opts() {
  return persistence::pg_options{test::pg_url(), 2'000, 60'000};
}

std::vector<std::int64_t> seqs_of(const std::string& entity) {
  persistence::pg_session s{opts()};
  pqxx::read_transaction tx{s.connection()};
  std::vector<std::int64_t> out;
  for (const auto& r :
       tx.exec_params("SELECT seq FROM events WHERE entity = $1 ORDER BY id", entity))
    out.push_back(r[0].as<std::int64_t>());
  return out;
}

std::int64_t counter_of(const std::string& table, const std::string& id) {
  persistence::pg_session s{opts()};
  pqxx::read_transaction tx{s.connection()};
  return tx.exec_params("SELECT event_seq FROM " + table + " WHERE id = $1", id)
    .at(0)[0]
    .as<std::int64_t>();
}

std::vector<std::int64_t> range(std::int64_t first, std::int64_t last) {
  std::vector<std::int64_t> out;
  for (auto s = first; s <= last; ++s)
    out.push_back(s);
  return out;
}

/// Collects the notifications of the feeds' channel on a connection of its own.
class channel_listener : public pqxx::notification_receiver {
 public:
  explicit channel_listener(pqxx::connection_base& c)
    : pqxx::notification_receiver(c, es::channel) {}
  void operator()(const std::string& payload, int) override { payloads.push_back(payload); }
  std::vector<std::string> payloads;
};

/// Waits up to `limit` for notifications on `conn`.
void drain(pqxx::connection& conn, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    conn.await_notification(0, 50'000);
  }
}

} // namespace

TEST_CASE("events: every stock and status change takes its entity's next seq", "[pg][events]") {
  runtime rt{settings()};
  auto p = create_ok(rt);
  CHECK(counter_of("products", p.id) == 0);

  pending<model::customer> pc;
  rt.create_customer(model::customer_draft{test::unique("seq") + "@example.com", "Seq Tester",
                                           "correct horse battery staple"},
                     pc.callback());
  auto c = pc.wait(20s);
  REQUIRE(c);
  model::principal who{false, c->id};
  auto order = [&] {
    model::order_request req;
    req.items.push_back({p.id, 1});
    req.shipping_address = {"Ann", "1 Main St", "", "Springfield", "", "12345", "US"};
    pending<model::order_outcome> po;
    rt.place_order(who, req, po.callback());
    auto r = po.wait(20s);
    REQUIRE(r);
    return r->placed;
  };
  auto o1 = order();
  auto o2 = order();
  pending<model::order> pcancel;
  rt.cancel_order(who, o1.id, pcancel.callback());
  REQUIRE(pcancel.wait(20s));
  model::product_patch stock;
  stock.stock = 500;
  REQUIRE(update(rt, p.id, stock));
  // A PATCH that changes no stock writes no event (nor one that sets the stock it has).
  REQUIRE(update(rt, p.id, price_patch(999)));
  REQUIRE(update(rt, p.id, stock));
  auto o3 = order();

  // Two orders, a cancellation, a PATCH and another order: five stock changes, 1 to 5.
  CHECK(seqs_of("product:" + p.id) == range(1, 5));
  CHECK(counter_of("products", p.id) == 5);
  CHECK(seqs_of("order:" + o1.id) == range(1, 2)); // placed, cancelled
  CHECK(counter_of("orders", o1.id) == 2);
  CHECK(seqs_of("order:" + o2.id) == range(1, 1));
  CHECK(seqs_of("order:" + o3.id) == range(1, 1));
}

TEST_CASE("events: the notification is sent with the commit, and a rollback sends nothing",
          "[pg][events]") {
  ensure_schema();
  persistence::pg_session listen_session{opts()};
  auto& lconn = listen_session.connection();
  channel_listener heard{lconn};

  runtime rt{settings()};
  auto p = create_ok(rt);
  rt.shutdown();

  persistence::pg_session s{opts()};
  {
    pqxx::work tx{s.connection()};
    CHECK(os::insert_event(tx, os::event_entity::product, p.id, "stock_changed",
                           R"({"product_id":"x","stock":1})")
          == 1);
    drain(lconn, 300ms);
    CHECK(heard.payloads.empty()); // not before the commit
    tx.abort();
  }
  drain(lconn, 300ms);
  CHECK(heard.payloads.empty()); // nor after a rollback
  CHECK(seqs_of("product:" + p.id).empty());
  CHECK(counter_of("products", p.id) == 0); // the counter's bump rolled back with it

  {
    pqxx::work tx{s.connection()};
    CHECK(os::insert_event(tx, os::event_entity::product, p.id, "stock_changed",
                           R"({"product_id":"x","stock":1})")
          == 1);
    CHECK(os::insert_event(tx, os::event_entity::product, p.id, "stock_changed",
                           R"({"stock":2,"product_id":"x"})")
          == 2);
    tx.commit();
  }
  auto until = std::chrono::steady_clock::now() + 10s;
  while (heard.payloads.size() < 2 && std::chrono::steady_clock::now() < until)
    lconn.await_notification(0, 100'000);
  REQUIRE(heard.payloads.size() == 2);
  auto first = es::parse_notification(heard.payloads[0]);
  REQUIRE(first);
  CHECK(first->entity == "product:" + p.id);
  CHECK(first->seq == 1);
  CHECK(first->type == "stock_changed");
  // The payload is the stored jsonb rendered by PostgreSQL, as the outbox reads render it.
  CHECK(first->payload == R"({"stock": 1, "product_id": "x"})");
  auto second = es::parse_notification(heard.payloads[1]);
  REQUIRE(second);
  CHECK(second->seq == 2);
  {
    pqxx::read_transaction tx{s.connection()};
    auto stored = es::read_after(tx, "product:" + p.id, 0, 10);
    REQUIRE(stored.size() == 2);
    CHECK(stored[0].payload == first->payload);
    CHECK(stored[1].payload == second->payload);
    CHECK(es::read_after(tx, "product:" + p.id, 1, 10).size() == 1);
    CHECK(es::read_after(tx, "product:" + p.id, 0, 1).size() == 1);
    CHECK(es::oldest_seq(tx, "product:" + p.id) == 1);
    auto head = es::read_head(tx, {model::feed_topic::kind::product, p.id});
    REQUIRE(head);
    CHECK(head->seq == 2);
    CHECK_FALSE(es::read_head(tx, {model::feed_topic::kind::order, p.id}));
  }
}

TEST_CASE("events: a notification's text is parsed, and one of another shape is refused",
          "[pg][events]") {
  auto e = es::parse_notification("order:ord_1\t12\torder_status\t{\"a\": \"x\\ty\"}");
  REQUIRE(e);
  CHECK(e->entity == "order:ord_1");
  CHECK(e->seq == 12);
  CHECK(e->type == "order_status");
  CHECK(e->payload == "{\"a\": \"x\\ty\"}");
  for (const char* bad :
       {"", "order:x", "order:x\t1\tt", "order:x\tnope\tt\t{}", "order:x\t0\tt\t{}", "\t1\tt\t{}",
        "order:x\t1\t\t{}", "order:x\t1x\tt\t{}", "order:x\t1\tt\t"})
    CHECK_FALSE(es::parse_notification(bad));
}

TEST_CASE("events: the migration renumbers the events written so far and backfills the counters",
          "[pg][events]") {
  ensure_schema();
  const auto schema = "mig_" + std::to_string(::getpid()) + "_"
                      + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()
                                       % 1'000'000);
  persistence::pg_session s{opts()};
  auto& conn = s.connection();
  {
    pqxx::nontransaction tx{conn};
    tx.exec("CREATE SCHEMA " + schema);
    tx.exec("SET search_path TO " + schema + ", public");
  }
  struct drop_schema {
    persistence::pg_session& s;
    std::string name;
    ~drop_schema() {
      try {
        pqxx::nontransaction tx{s.connection()};
        tx.exec("SET search_path TO public");
        tx.exec("DROP SCHEMA " + name + " CASCADE");
      } catch (const std::exception& e) {
        WARN("could not drop schema " << name << ": " << e.what());
      }
    }
  } cleanup{s, schema};

  const persistence::migration* dense = nullptr;
  for (const auto& m : persistence::migrations()) {
    if (m.name == "dense_event_seq") {
      dense = &m;
      break;
    }
    pqxx::work tx{conn};
    tx.exec(m.sql);
    tx.commit();
  }
  REQUIRE(dense);
  {
    // Events as the server wrote them before: the row's version as seq, skipping numbers.
    pqxx::work tx{conn};
    tx.exec(
      "INSERT INTO products (id, sku, name, price_cents, currency, stock) VALUES "
      "('p_old', 'OLD-1', 'Old', 100, 'USD', 5), ('p_new', 'NEW-1', 'New', 100, 'USD', 5)");
    tx.exec(
      "INSERT INTO customers (id, email, name, password_hash) VALUES "
      "('c_1', 'old@example.com', 'Old', 'x')");
    tx.exec(
      "INSERT INTO orders (id, customer_id, status, currency, subtotal_cents, shipping_cents, "
      "total_cents, shipping_address, payment_due_at) VALUES "
      "('o_old', 'c_1', 'cancelled', 'USD', 100, 0, 100, '{}', now())");
    tx.exec(
      "INSERT INTO events (entity, seq, type, payload) VALUES "
      "('product:p_old', 2, 'stock_changed', '{\"stock\": 4}'),"
      "('product:p_old', 3, 'stock_changed', '{\"stock\": 3}'),"
      "('product:p_old', 7, 'stock_changed', '{\"stock\": 2}'),"
      "('order:o_old', 1, 'order_status', '{\"status\": \"pending_payment\"}'),"
      "('order:o_old', 4, 'order_status', '{\"status\": \"cancelled\"}')");
    tx.commit();
  }
  {
    pqxx::work tx{conn};
    tx.exec(dense->sql);
    tx.commit();
  }
  pqxx::read_transaction tx{conn};
  auto rows = tx.exec(
    "SELECT entity, seq, payload->>'stock', payload->>'status' FROM events ORDER BY entity, seq");
  std::vector<std::string> got;
  for (const auto& r : rows)
    got.push_back(r[0].as<std::string>() + "#" + r[1].as<std::string>() + ":"
                  + (r[2].is_null() ? r[3].as<std::string>() : r[2].as<std::string>()));
  CHECK(got
        == std::vector<std::string>{"order:o_old#1:pending_payment", "order:o_old#2:cancelled",
                                    "product:p_old#1:4", "product:p_old#2:3", "product:p_old#3:2"});
  auto counter = [&tx](const std::string& sql) { return tx.exec(sql).at(0)[0].as<std::int64_t>(); };
  CHECK(counter("SELECT event_seq FROM products WHERE id = 'p_old'") == 3);
  CHECK(counter("SELECT event_seq FROM products WHERE id = 'p_new'") == 0);
  CHECK(counter("SELECT event_seq FROM orders WHERE id = 'o_old'") == 2);
}
