#include "actors/payment_provider.hpp"

#include "persistence/ids.hpp"

namespace emporium::actors {

namespace {

class simulated_provider : public payment_provider {
 public:
  std::string name() const override { return "simulated"; }

  charge_result charge(const std::string& method, std::int64_t, const std::string&,
                       const std::string& idempotency_key) override {
    if (method == "tok_visa")
      // Derived from the idempotency key: charging the same order again yields the same charge.
      return {charge_result::kind::captured,
              "ch_sim_" + persistence::sha256_hex("charge:" + idempotency_key).substr(0, 24), {}};
    if (method == "tok_flaky")
      return {charge_result::kind::transient_failure, {}, "the provider timed out"};
    return {charge_result::kind::declined, {}, "the card was declined"};
  }

  bool refund(const std::string&) override { return true; }
};

} // namespace

std::unique_ptr<payment_provider> make_simulated_provider() {
  return std::make_unique<simulated_provider>();
}

} // namespace emporium::actors
