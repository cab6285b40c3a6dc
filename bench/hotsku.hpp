#pragma once
/// The checks of `--scenario hot-sku` beyond the accounting (accounting.hpp): one product,
/// ordered by every connection, must never be oversold; with limited stock (`--expect-sellout`)
/// the run must also have sold it out and been refused with 409 afterwards, or the oversell
/// check was never exercised.

#include "bench/accounting.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace emporium::bench {

struct sellout_input {
  std::string product_id;
  std::int64_t quantity = 1;      ///< units per order
  std::int64_t stock_before = 0;  ///< when the run started
  std::int64_t stock_after = -1;  ///< when it ended
  std::uint64_t checkout_409 = 0; ///< checkouts refused 409 (short of stock)
  bool expect_sellout = false;
};

struct sellout_verdict {
  std::int64_t units_acknowledged = 0;               ///< of the product, in 201 answers
  std::int64_t units_acknowledged_not_cancelled = 0; ///< of those, orders not cancelled since
  bool sold_out = false;                             ///< fewer units left than one order takes
  bool passed = true;
  std::vector<std::string> failures;
};

/// `acks`: every order acknowledged in the run; `cancelled`: the ids of those now cancelled
/// (their units went back to the stock and may have been sold again).
sellout_verdict check_sellout(const sellout_input& in,
                              const std::vector<accounting::acknowledged_order>& acks,
                              const std::vector<std::string>& cancelled);

} // namespace emporium::bench
