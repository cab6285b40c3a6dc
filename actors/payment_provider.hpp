#pragma once
/// Payment providers. Calls are blocking (a real provider is a remote HTTP API), so they run on
/// the payment workers (a db_pool of their own), never on a database worker nor on an actor's
/// scheduler thread.
///
/// Every call names the charge by a reference the caller derives from the order
/// (charge_reference): charging a reference twice charges once, and `find` tells whether a
/// reference was charged, so an order whose payment outcome was lost can be reconciled.

#include "config/settings.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace emporium::actors {

struct charge_result {
  enum class kind { captured, declined, transient_failure } outcome;
  std::string reference; ///< the charge's reference when captured
  std::string message;
};

/// What the provider knows about a reference.
enum class charge_state { none, captured, refunded };

/// One charge of several asked at once (payment_provider::charge_many).
struct charge_request {
  std::string payment_method;
  std::int64_t amount_cents = 0;
  std::string currency;
  std::string reference;
};

class payment_provider {
 public:
  virtual ~payment_provider() = default;
  virtual std::string name() const = 0;
  /// Charges `amount_cents` under `reference`; a repeated call with the same reference (after a
  /// lost answer, or racing a reconciliation) answers the first charge and charges nothing more.
  /// Throws when the provider could not be asked (the outcome is then unknown).
  virtual charge_result charge(const std::string& payment_method, std::int64_t amount_cents,
                               const std::string& currency, const std::string& reference) = 0;
  /// Each request charged as charge() would, answered in their order: the charges a payment
  /// worker holds at once (actors/order_actor.cpp). Throws when the provider could not be
  /// asked; the outcome of every request is then unknown. The default asks charge() for each in
  /// turn; a provider that can take several charges in one call does so.
  virtual std::vector<charge_result> charge_many(const std::vector<charge_request>& requests);
  /// Whether `reference` was charged. Throws when the provider could not be asked.
  virtual charge_state find(const std::string& reference) = 0;
  /// Refunds the charge `reference` (again: no effect); false when the provider refused.
  virtual bool refund(const std::string& reference) = 0;
};

/// The reference of order `order_id`'s charge. One per order: an order is paid at most once.
std::string charge_reference(const std::string& order_id);

/// The built-in provider: `tok_visa` is captured, `tok_declined` declined, `tok_flaky` fails
/// transiently every time; any other token is declined. Its ledger is the `simulated_charges`
/// table (it must outlive a crash of this server, as a real provider's does).
std::unique_ptr<payment_provider> make_simulated_provider(const config::settings& s);

/// Faults injected by tests, read once from EMPORIUM_TEST_FAULT (comma-separated); all off when
/// it is unset, as in production.
struct test_faults {
  bool fail_record_after_charge = false; ///< a live payment's record step fails after the charge
  bool pause_after_charge = false;       ///< the payment worker sleeps 60 s after the charge
  bool refund_unreachable = false;       ///< every refund fails as if the provider were down
  bool slow_provider = false;            ///< every provider call takes 1 s longer
};
const test_faults& injected_faults();

} // namespace emporium::actors
