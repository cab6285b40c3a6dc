#include "actors/payment_provider.hpp"

#include "persistence/pg.hpp"

#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

namespace emporium::actors {

std::string charge_reference(const std::string& order_id) {
  return "ch_" + order_id;
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
    }
    return f;
  }();
  return faults;
}

namespace {

// One round trip: the new charge's status, or the status of the charge already under this
// reference (a charge asked twice is one charge). No row only when another charge under it
// committed after this statement began: charge_status_sql then reads it.
constexpr const char* insert_charge_sql =
  "WITH ins AS (INSERT INTO simulated_charges (reference, amount_cents, currency, method, status) "
  "VALUES ($1, $2, $3, $4, 'captured') ON CONFLICT (reference) DO NOTHING RETURNING status) "
  "SELECT status FROM ins UNION ALL "
  "SELECT status FROM simulated_charges WHERE reference = $1";

constexpr const char* charge_status_sql =
  "SELECT status FROM simulated_charges WHERE reference = $1";

constexpr const char* refund_charge_sql =
  "UPDATE simulated_charges SET status = 'refunded', refunded_at = now() "
  "WHERE reference = $1 AND status = 'captured'";

class simulated_provider : public payment_provider {
 public:
  explicit simulated_provider(const config::settings& s)
    : opts_{s.postgres.url, s.postgres.connect_timeout_ms, s.postgres.statement_timeout_ms} {}

  std::string name() const override { return "simulated"; }

  charge_result charge(const std::string& method, std::int64_t amount_cents,
                       const std::string& currency, const std::string& reference) override {
    latency();
    if (method == "tok_flaky")
      return {charge_result::kind::transient_failure, {}, "the provider timed out"};
    if (method != "tok_visa")
      return {charge_result::kind::declined, {}, "the card was declined"};
    // Each a statement of its own, committed by itself: no BEGIN and COMMIT round trips.
    // Prepared: parsing and planning the statement afresh was more than half of the ledger's
    // CPU per charge (bench/README.md, "Plans made on empty tables; the simulated provider's
    // ledger prepared").
    auto state = with_ledger([&](pqxx::connection& conn) {
      pqxx::nontransaction tx{conn};
      auto rows = persistence::exec_prepared(tx, "ledger.insert_charge", insert_charge_sql,
                                             reference, amount_cents, currency, method);
      if (rows.empty())
        rows = persistence::exec_prepared(tx, "ledger.charge_status", charge_status_sql, reference);
      return rows.at(0)[0].as<std::string>();
    });
    if (state == "refunded")
      return {charge_result::kind::declined, {}, "this charge was refunded"};
    return {charge_result::kind::captured, reference, {}};
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
    with_ledger([&](pqxx::connection& conn) {
      pqxx::nontransaction tx{conn};
      persistence::exec_prepared(tx, "ledger.refund_charge", refund_charge_sql, reference);
      return true;
    });
    return true;
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
