#include "bench/hotsku.hpp"

#include <algorithm>
#include <set>

namespace emporium::bench {

sellout_verdict check_sellout(const sellout_input& in,
                              const std::vector<accounting::acknowledged_order>& acks,
                              const std::vector<std::string>& cancelled) {
  sellout_verdict v;
  std::set<std::string> gone(cancelled.begin(), cancelled.end());
  for (const auto& a : acks)
    for (const auto& [pid, q] : a.lines)
      if (pid == in.product_id) {
        v.units_acknowledged += q;
        if (!gone.count(a.order_id))
          v.units_acknowledged_not_cancelled += q;
      }
  v.sold_out = in.stock_after >= 0 && in.stock_after < std::max<std::int64_t>(1, in.quantity);
  auto fail = [&v](std::string line) {
    v.passed = false;
    v.failures.push_back(std::move(line));
  };
  if (v.units_acknowledged_not_cancelled > in.stock_before)
    fail("oversold: " + std::to_string(v.units_acknowledged_not_cancelled)
         + " units acknowledged (orders not cancelled) of a stock of "
         + std::to_string(in.stock_before));
  if (in.stock_after < 0)
    fail("stock after the run is " + std::to_string(in.stock_after)
         + (in.stock_after == -1 ? " (unknown: it could not be read)" : " (below zero)"));
  if (in.expect_sellout && in.stock_after >= 0 && !v.sold_out)
    fail("the stock did not run out (" + std::to_string(in.stock_after)
         + " left): the sell-out was not exercised; lower --hot-stock or run longer");
  if (in.expect_sellout && v.sold_out && in.checkout_409 == 0)
    fail("sold out, but no checkout was refused with 409 afterwards");
  return v;
}

} // namespace emporium::bench
