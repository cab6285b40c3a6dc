// The statements that move an order on (persistence/order_store.cpp: begin_payment,
// abandon_payment, record_payment, transition) return the order as it is after them, built from
// the caller's copy and what the statement returned, and the order actor keeps that without
// reading the order again: it must be exactly what find_order reads. And the simulated
// provider's ledger, written with one statement per call, charges a reference once.

#include "actors/payment_provider.hpp"
#include "persistence/order_store.hpp"
#include "persistence/store_support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>

using namespace emporium;
using namespace emporium::test::store_pg;
namespace os = emporium::persistence::order_store;

namespace {

/// `moved` as find_order reads it in the same transaction (all of it: order_json has every
/// field, the lines and the payment).
void check_as_stored(pqxx::transaction_base& tx, const model::order& moved) {
  auto stored = os::find_order(tx, moved.id);
  REQUIRE(stored);
  CHECK(os::encode_order(moved) == os::encode_order(*stored));
}

/// The simulated provider on the test database.
std::unique_ptr<actors::payment_provider> simulated_provider() {
  ensure_schema();
  config::settings settings;
  settings.postgres.url = test::pg_url();
  return actors::make_simulated_provider(settings);
}

/// The simulated provider's ledger rows under `reference`: how many, and the least amount (0
/// when none).
std::pair<int, int> ledger_rows(pg_session& s, const std::string& reference) {
  pqxx::read_transaction tx{s.connection()};
  auto rows = tx.exec_params(
    "SELECT count(*), min(amount_cents) FROM simulated_charges WHERE reference = $1", reference);
  return std::pair{rows[0][0].as<int>(), rows[0][1].is_null() ? 0 : rows[0][1].as<int>()};
}

} // namespace

TEST_CASE("an order moved on is returned as find_order reads it, payment and points included",
          "[pg][orders]") {
  ensure_schema();
  pg_session s{pg_opts()};
  auto customer = insert_customer_committed(s, "moves");
  auto product = insert_stocked_product(s, 10, "MOVE");
  model::order o;
  {
    pqxx::work tx{s.connection()};
    o = os::place_order(tx, unpaid_order(customer, {{product, 2}}), std::nullopt, std::nullopt)
          .stored;
    tx.commit();
  }
  REQUIRE(o.status == model::order_status::pending_payment);
  // updated_at has millisecond resolution here: a move in the same millisecond as the one
  // before it would not show that the timestamp was taken from the statement.
  auto next_ms = [] { std::this_thread::sleep_for(std::chrono::milliseconds(3)); };

  pqxx::work tx{s.connection()};
  next_ms();
  auto paying = os::begin_payment(tx, o, "ch_moves_" + o.id);
  REQUIRE(paying);
  CHECK(paying->status == model::order_status::paying);
  CHECK(paying->version == o.version + 1);
  CHECK(paying->updated_at_ms > o.updated_at_ms);
  check_as_stored(tx, *paying);
  CHECK_FALSE(os::begin_payment(tx, *paying, "ch_again")); // no longer pending payment
  // Run again with its own reference (the worker's retry after a lost answer): as it is.
  next_ms();
  auto again = os::begin_payment(tx, o, "ch_moves_" + o.id);
  REQUIRE(again);
  CHECK(again->status == model::order_status::paying);
  check_as_stored(tx, *again);
  paying = again;

  next_ms();
  auto back = os::abandon_payment(tx, *paying);
  REQUIRE(back);
  CHECK(back->status == model::order_status::pending_payment);
  check_as_stored(tx, *back);
  CHECK_FALSE(os::abandon_payment(tx, *back));

  next_ms();
  paying = os::begin_payment(tx, *back, "ch_moves_" + o.id);
  REQUIRE(paying);
  next_ms();
  auto paid = os::record_payment(
    tx, *paying, model::payment_info{"captured", "simulated", "ch_moves_" + o.id}, 42);
  REQUIRE(paid);
  CHECK(paid->order.status == model::order_status::paid);
  CHECK(paid->order.points_awarded == 42);
  REQUIRE(paid->order.payment);
  check_as_stored(tx, paid->order);
  // The one statement also credited the points and wrote the order's event, at its next seq.
  auto points = tx.exec_params1("SELECT loyalty_points, version FROM customers WHERE id = $1",
                                customer);
  CHECK(points[0].as<std::int64_t>() == paid->customer_points);
  CHECK(points[1].as<std::int64_t>() == paid->customer_version);
  CHECK(paid->customer_points >= 42);
  auto events = tx.exec_params(
    "SELECT seq, payload->>'status' FROM events WHERE entity = $1 "
    "ORDER BY seq",
    "order:" + o.id);
  REQUIRE(events.size() >= 1);
  CHECK(events.back()[1].as<std::string>() == "paid");
  CHECK(events.back()[0].as<std::int64_t>() == static_cast<std::int64_t>(events.size()));
  CHECK_FALSE(os::record_payment(
    tx, paid->order, model::payment_info{"captured", "simulated", "ch_moves_" + o.id}, 42));

  next_ms();
  auto shipped = os::transition(tx, paid->order, model::order_status::shipped);
  REQUIRE(shipped);
  check_as_stored(tx, *shipped); // the payment stays
  next_ms();
  auto delivered = os::transition(tx, *shipped, model::order_status::delivered);
  REQUIRE(delivered);
  check_as_stored(tx, *delivered);
  CHECK_FALSE(os::transition(tx, *shipped, model::order_status::delivered)); // from moved on
  tx.commit();
}

TEST_CASE("the simulated provider charges a reference once, however often it is asked",
          "[pg][orders][payments]") {
  auto provider = simulated_provider();
  pg_session s{pg_opts()};
  const auto reference = test::unique("ch_once");
  auto ledger = [&] { return ledger_rows(s, reference); };
  CHECK(provider->find(reference) == actors::charge_state::none);

  auto first = provider->charge("tok_visa", 1'250, "EUR", reference);
  CHECK(first.outcome == actors::charge_result::kind::captured);
  CHECK(first.reference == reference);
  CHECK(ledger() == std::pair{1, 1'250});
  // Asked again (a lost answer, a reconciliation racing the payment): the first charge.
  auto again = provider->charge("tok_visa", 9'999, "EUR", reference);
  CHECK(again.outcome == actors::charge_result::kind::captured);
  CHECK(ledger() == std::pair{1, 1'250});
  CHECK(provider->find(reference) == actors::charge_state::captured);

  CHECK(provider->charge("tok_declined", 1'250, "EUR", test::unique("ch_no")).outcome
        == actors::charge_result::kind::declined);
  CHECK(provider->refund(reference));
  CHECK(provider->refund(reference)); // again: no effect
  CHECK(provider->find(reference) == actors::charge_state::refunded);
  CHECK(provider->charge("tok_visa", 1'250, "EUR", reference).outcome
        == actors::charge_result::kind::declined);
  CHECK(ledger() == std::pair{1, 1'250});
}

TEST_CASE(
  "the simulated provider's charges asked together are each what charge() would answer, "
  "and each reference is charged once",
  "[pg][orders][payments]") {
  auto provider = simulated_provider();
  pg_session s{pg_opts()};
  auto ledger = [&](const std::string& reference) { return ledger_rows(s, reference); };
  const auto fresh = test::unique("ch_many_fresh");
  const auto earlier = test::unique("ch_many_earlier");
  const auto refunded = test::unique("ch_many_refunded");
  REQUIRE(provider->charge("tok_visa", 700, "EUR", earlier).outcome
          == actors::charge_result::kind::captured);
  REQUIRE(provider->charge("tok_visa", 800, "EUR", refunded).outcome
          == actors::charge_result::kind::captured);
  REQUIRE(provider->refund(refunded));

  using kind = actors::charge_result::kind;
  auto out = provider->charge_many({{"tok_visa", 1'000, "EUR", fresh},
                                    {"tok_visa", 9'999, "EUR", earlier},
                                    {"tok_declined", 1'000, "EUR", test::unique("ch_many_no")},
                                    {"tok_visa", 2'000, "EUR", fresh}, // the same, asked twice
                                    {"tok_flaky", 1'000, "EUR", test::unique("ch_many_flaky")},
                                    {"tok_visa", 800, "EUR", refunded}});
  REQUIRE(out.size() == 6);
  CHECK(out[0].outcome == kind::captured);
  CHECK(out[0].reference == fresh);
  CHECK(out[1].outcome == kind::captured); // the earlier charge answers
  CHECK(out[1].reference == earlier);
  CHECK(out[2].outcome == kind::declined);
  CHECK(out[3].outcome == kind::captured);
  CHECK(out[3].reference == fresh);
  CHECK(out[4].outcome == kind::transient_failure);
  CHECK(out[5].outcome == kind::declined); // refunded: not charged again
  CHECK(ledger(fresh) == std::pair{1, 1'000});
  CHECK(ledger(earlier) == std::pair{1, 700});
  CHECK(ledger(refunded) == std::pair{1, 800});
  CHECK(provider->find(refunded) == actors::charge_state::refunded);
  CHECK(provider->charge_many({}).empty());
}

TEST_CASE(
  "payment intents of several orders in one statement answer each as alone, an order "
  "twice in one batch included",
  "[pg][orders]") {
  // A database worker batches the intents (actors/db_pool.hpp).
  ensure_schema();
  pg_session s{pg_opts()};
  auto customer = insert_customer_committed(s, "intents");
  auto product = insert_stocked_product(s, 10, "INTENT");
  std::vector<model::order> placed;
  {
    pqxx::work tx{s.connection()};
    for (int i = 0; i < 3; ++i)
      placed.push_back(
        os::place_order(tx, unpaid_order(customer, {{product, 1}}), std::nullopt, std::nullopt)
          .stored);
    tx.commit();
  }
  const auto& a = placed[0];
  const auto& b = placed[1];
  const auto& c = placed[2];
  pqxx::nontransaction tx{s.connection()};
  REQUIRE(os::transition(tx, c, model::order_status::cancelled)); // no payment for c
  auto answers = os::begin_payments(
    tx, {{&a, "ch_a_" + a.id}, {&b, "ch_b_" + b.id}, {&c, "ch_c_" + c.id}, {&a, "ch_a_" + a.id}});
  REQUIRE(answers.size() == 4);
  REQUIRE(answers[0]);
  REQUIRE(answers[1]);
  CHECK_FALSE(answers[2]);
  REQUIRE(answers[3]); // a again, under its reference: answered as it is
  check_as_stored(tx, *answers[1]);
  check_as_stored(tx, *answers[3]);
  CHECK(answers[0]->version == a.version + 1);
  CHECK(answers[3]->version == a.version + 2);
  CHECK(
    tx.exec_params1("SELECT payment_reference FROM orders WHERE id = $1", b.id)[0].as<std::string>()
    == "ch_b_" + b.id);
  // Another reference for a paying order is refused, the others' unchanged.
  auto refused = os::begin_payments(tx, {{&a, "ch_other"}, {&b, "ch_b_" + b.id}});
  CHECK_FALSE(refused[0]);
  REQUIRE(refused[1]);
}

TEST_CASE(
  "payments of several orders recorded in one statement answer each as alone: one "
  "customer's two orders, an order twice, and a cancelled one",
  "[pg][orders]") {
  // A database worker batches the records (actors/db_pool.hpp).
  ensure_schema();
  pg_session s{pg_opts()};
  auto alice = insert_customer_committed(s, "records-a");
  auto bob = insert_customer_committed(s, "records-b");
  auto product = insert_stocked_product(s, 10, "RECORD");
  std::vector<model::order> placed;
  {
    pqxx::work tx{s.connection()};
    for (const auto& who : {alice, alice, bob, bob})
      placed.push_back(
        os::place_order(tx, unpaid_order(who, {{product, 1}}), std::nullopt, std::nullopt).stored);
    tx.commit();
  }
  pqxx::nontransaction tx{s.connection()};
  REQUIRE(os::transition(tx, placed[3], model::order_status::cancelled));
  auto points_of = [&](const std::string& who) {
    return tx.exec_params1("SELECT loyalty_points FROM customers WHERE id = $1", who)[0]
      .as<std::int64_t>();
  };
  const auto alice_before = points_of(alice);
  auto charge = [](const model::order& o) {
    return model::payment_info{"captured", "simulated", "ch_rec_" + o.id};
  };
  auto answers = os::record_payments(tx, {{&placed[0], charge(placed[0]), 10},
                                          {&placed[1], charge(placed[1]), 20},
                                          {&placed[2], charge(placed[2]), 30},
                                          {&placed[3], charge(placed[3]), 40},
                                          {&placed[0], charge(placed[0]), 10}});
  REQUIRE(answers.size() == 5);
  REQUIRE(answers[0]);
  REQUIRE(answers[1]);
  REQUIRE(answers[2]);
  CHECK_FALSE(answers[3]); // cancelled: nothing recorded
  CHECK_FALSE(answers[4]); // paid already by answers[0]
  // Each customer's points as they were right after that order's own credit.
  CHECK(answers[0]->customer_points == alice_before + 10);
  CHECK(answers[1]->customer_points == alice_before + 30);
  CHECK(answers[1]->customer_version == answers[0]->customer_version + 1);
  CHECK(points_of(alice) == alice_before + 30);
  for (int i : {0, 1, 2}) {
    CHECK(answers[i]->order.status == model::order_status::paid);
    check_as_stored(tx, answers[i]->order);
  }
  CHECK(
    tx.exec_params1("SELECT count(*) FROM payments WHERE order_id = $1", placed[0].id)[0].as<int>()
    == 1);
  CHECK(
    tx.exec_params1("SELECT count(*) FROM payments WHERE order_id = $1", placed[3].id)[0].as<int>()
    == 0);
  // Each paid order's event, once, at its next seq.
  for (int i : {0, 1, 2})
    CHECK(tx.exec_params1("SELECT count(*) FROM events WHERE entity = $1 AND "
                          "payload->>'status' = 'paid'",
                          "order:" + placed[i].id)[0]
            .as<int>()
          == 1);
}
