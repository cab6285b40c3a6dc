#include "actors/payment_provider.hpp"

#include "persistence/pg.hpp"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <vector>

namespace emporium::actors {

std::string charge_reference(const std::string& order_id) {
  return "ch_" + order_id;
}

std::vector<charge_result> payment_provider::charge_many(
  const std::vector<charge_request>& requests) {
  std::vector<charge_result> out;
  out.reserve(requests.size());
  for (const auto& r : requests)
    out.push_back(charge(r.payment_method, r.amount_cents, r.currency, r.reference));
  return out;
}

const test_faults& injected_faults() {
  static const test_faults faults = [] {
    test_faults f;
    const char* raw = std::getenv("EMPORIUM_TEST_FAULT");
    if (!raw)
      return f;
    std::stringstream in{raw};
    for (std::string item; std::getline(in, item, ',');) {
      f.fail_record_after_charge |= item == "fail_record_after_charge";
      f.pause_after_charge |= item == "pause_after_charge";
      f.slow_provider |= item == "slow_provider";
      f.refund_unreachable |= item == "refund_unreachable";
    }
    return f;
  }();
  return faults;
}

namespace {

// Charges in one round trip, committed by themselves (no BEGIN and COMMIT round trips): each
// reference's new charge, or the charge already under it (a charge asked twice is one charge;
// the second SELECT reads the ledger as it was before this statement, so it never repeats a
// row the INSERT returns). A reference missing from the answer was charged by a statement that
// committed after this one began: charge_status_sql then reads it. The references must be
// distinct.
constexpr const char* insert_charges_sql =
  "WITH i AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) "
  "AS i(reference, amount_cents, currency, method)), "
  "ins AS (INSERT INTO simulated_charges (reference, amount_cents, currency, method, status) "
  "SELECT reference, amount_cents, currency, method, 'captured' FROM i "
  "ON CONFLICT (reference) DO NOTHING RETURNING reference, status) "
  "SELECT reference, status FROM ins UNION ALL "
  "SELECT s.reference, s.status FROM simulated_charges s JOIN i ON s.reference = i.reference";

constexpr const char* charge_status_sql =
  "SELECT status FROM simulated_charges WHERE reference = $1";

// Whether the charge is refunded now: by this statement, or before (refunding is idempotent).
// A reference never charged is not refunded: the provider refuses.
constexpr const char* refund_charge_sql =
  "WITH r AS (UPDATE simulated_charges SET status = 'refunded', refunded_at = now() "
  "WHERE reference = $1 AND status = 'captured' RETURNING 1) "
  "SELECT EXISTS (SELECT 1 FROM r) OR EXISTS (SELECT 1 FROM simulated_charges "
  "WHERE reference = $1 AND status = 'refunded')";

class simulated_provider : public payment_provider {
 public:
  explicit simulated_provider(const config::settings& s)
    : opts_{s.postgres.url, s.postgres.connect_timeout_ms, s.postgres.statement_timeout_ms} {}

  std::string name() const override { return "simulated"; }

  charge_result charge(const std::string& method, std::int64_t amount_cents,
                       const std::string& currency, const std::string& reference) override {
    return charge_many({{method, amount_cents, currency, reference}}).front();
  }

  /// The ledger's charges of the batch in one statement and one commit: on this machine the
  /// commit and the round trip, not the row, are most of what a charge costs the database.
  std::vector<charge_result> charge_many(const std::vector<charge_request>& requests) override {
    latency();
    std::vector<charge_result> out(requests.size());
    std::vector<std::size_t> charged; ///< the requests the ledger answers
    std::vector<std::string> references, currencies, methods;
    std::vector<std::int64_t> amounts;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const auto& r = requests[i];
      if (r.payment_method == "tok_flaky") {
        out[i] = {charge_result::kind::transient_failure, {}, "the provider timed out"};
        continue;
      }
      if (r.payment_method != "tok_visa") {
        out[i] = {charge_result::kind::declined, {}, "the card was declined"};
        continue;
      }
      charged.push_back(i);
      if (std::find(references.begin(), references.end(), r.reference) == references.end()) {
        references.push_back(r.reference);
        amounts.push_back(r.amount_cents);
        currencies.push_back(r.currency);
        methods.push_back(r.payment_method);
      }
    }
    if (charged.empty())
      return out;
    // Prepared: parsing and planning the statement afresh was more than half of the ledger's
    // CPU per charge (bench/README.md, "Plans made on empty tables; the simulated provider's
    // ledger prepared and batched").
    auto states = with_ledger([&](pqxx::connection& conn) {
      pqxx::nontransaction tx{conn};
      std::unordered_map<std::string, std::string> by_reference;
      for (const auto& row : persistence::exec_prepared(
             tx, "ledger.insert_charges", insert_charges_sql, persistence::text_array(references),
             persistence::int_array(amounts), persistence::text_array(currencies),
             persistence::text_array(methods)))
        by_reference.emplace(row[0].as<std::string>(), row[1].as<std::string>());
      for (const auto& reference : references)
        if (!by_reference.count(reference))
          by_reference.emplace(reference, persistence::exec_prepared(tx, "ledger.charge_status",
                                                                     charge_status_sql, reference)
                                            .at(0)[0]
                                            .as<std::string>());
      return by_reference;
    });
    for (auto i : charged) {
      if (states.at(requests[i].reference) == "refunded")
        out[i] = {charge_result::kind::declined, {}, "this charge was refunded"};
      else
        out[i] = {charge_result::kind::captured, requests[i].reference, {}};
    }
    return out;
  }

  charge_state find(const std::string& reference) override {
    latency();
    auto state = with_ledger([&](pqxx::connection& conn) {
      pqxx::nontransaction tx{conn};
      auto rows = persistence::exec_prepared(tx, "ledger.charge_status", charge_status_sql,
                                             reference);
      return rows.empty() ? std::string{} : rows[0][0].as<std::string>();
    });
    if (state == "captured")
      return charge_state::captured;
    if (state == "refunded")
      return charge_state::refunded;
    return charge_state::none;
  }

  bool refund(const std::string& reference) override {
    latency();
    if (injected_faults().refund_unreachable)
      throw std::runtime_error("the payment provider cannot be reached (injected fault)");
    return with_ledger([&](pqxx::connection& conn) {
      pqxx::nontransaction tx{conn};
      return persistence::exec_prepared(tx, "ledger.refund_charge", refund_charge_sql, reference)
        .at(0)[0]
        .as<bool>();
    });
  }

 private:
  static void latency() {
    if (injected_faults().slow_provider)
      std::this_thread::sleep_for(std::chrono::seconds(1));
  }

  /// Runs `fn` on a ledger connection borrowed for the call (the provider is called from
  /// several payment workers at once). A connection that failed is dropped, and the exception
  /// goes to the caller: the outcome is unknown, as with a real provider's timeout.
  template <class Fn>
  auto with_ledger(Fn fn) -> decltype(fn(std::declval<pqxx::connection&>())) {
    std::unique_ptr<persistence::pg_session> session;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!idle_.empty()) {
        session = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    if (!session)
      session = std::make_unique<persistence::pg_session>(opts_);
    try {
      auto out = fn(session->connection());
      std::lock_guard<std::mutex> guard{mtx_};
      idle_.push_back(std::move(session));
      return out;
    } catch (...) {
      session->drop();
      throw;
    }
  }

  persistence::pg_options opts_;
  std::mutex mtx_;
  std::vector<std::unique_ptr<persistence::pg_session>> idle_;
};

} // namespace

std::unique_ptr<payment_provider> make_simulated_provider(const config::settings& s) {
  return std::make_unique<simulated_provider>(s);
}

} // namespace emporium::actors
