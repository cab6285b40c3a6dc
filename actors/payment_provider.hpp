#pragma once
/// Payment providers. Calls are blocking (a real provider is a remote HTTP API), so they run on
/// the blocking workers, never on an actor's scheduler thread.

#include <memory>
#include <string>

namespace emporium::actors {

struct charge_result {
  enum class kind { captured, declined, transient_failure } outcome;
  std::string reference; ///< the provider's charge id when captured
  std::string message;
};

class payment_provider {
 public:
  virtual ~payment_provider() = default;
  virtual std::string name() const = 0;
  /// Charges `amount_cents`; `idempotency_key` (the order id) makes a repeated call after a
  /// lost answer charge once at a real provider.
  virtual charge_result charge(const std::string& payment_method, std::int64_t amount_cents,
                               const std::string& currency, const std::string& idempotency_key) = 0;
  virtual bool refund(const std::string& reference) = 0;
};

/// The built-in provider: `tok_visa` is captured, `tok_declined` declined, `tok_flaky` fails
/// transiently every time; any other token is declined.
std::unique_ptr<payment_provider> make_simulated_provider();

} // namespace emporium::actors
