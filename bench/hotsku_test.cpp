#include "bench/hotsku.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using emporium::bench::check_sellout;
using emporium::bench::sellout_input;
using emporium::bench::accounting::acknowledged_order;

namespace {

/// `n` acknowledged orders of one unit of `pid` (ids o0, o1, ...), plus one of another product.
std::vector<acknowledged_order> orders_of(const std::string& pid, int n) {
  std::vector<acknowledged_order> acks;
  for (int i = 0; i < n; ++i)
    acks.push_back({"o" + std::to_string(i), "cust_1", {{pid, 1}}});
  acks.push_back({"other", "cust_1", {{"prod_other", 5}}});
  return acks;
}

bool mentions(const std::vector<std::string>& failures, const std::string& needle) {
  for (const auto& f : failures)
    if (f.find(needle) != std::string::npos)
      return true;
  return false;
}

} // namespace

TEST_CASE("hot-sku: a sell-out with every unit acknowledged once and 409s after it passes",
          "[bench][hotsku]") {
  sellout_input in{"prod_hot", 1, 10, 0, 25, true};
  auto v = check_sellout(in, orders_of("prod_hot", 10), {});
  CHECK(v.passed);
  CHECK(v.failures.empty());
  CHECK(v.sold_out);
  CHECK(v.units_acknowledged == 10);
  CHECK(v.units_acknowledged_not_cancelled == 10);
}

TEST_CASE("hot-sku: more units acknowledged than the stock held is an oversell",
          "[bench][hotsku]") {
  sellout_input in{"prod_hot", 1, 10, 0, 25, true};
  auto v = check_sellout(in, orders_of("prod_hot", 11), {});
  CHECK_FALSE(v.passed);
  CHECK(mentions(v.failures, "oversold: 11 units"));
}

TEST_CASE("hot-sku: units of a cancelled order went back and may be sold again",
          "[bench][hotsku]") {
  sellout_input in{"prod_hot", 1, 10, 0, 3, true};
  auto acks = orders_of("prod_hot", 11);
  auto v = check_sellout(in, acks, {"o3"});
  CHECK(v.passed);
  CHECK(v.units_acknowledged == 11);
  CHECK(v.units_acknowledged_not_cancelled == 10);
}

TEST_CASE("hot-sku: with a sell-out expected, stock left over or no 409 fails the run",
          "[bench][hotsku]") {
  auto acks = orders_of("prod_hot", 4);
  SECTION("stock left: the oversell check was not exercised") {
    sellout_input in{"prod_hot", 1, 10, 6, 0, true};
    auto v = check_sellout(in, acks, {});
    CHECK_FALSE(v.passed);
    CHECK_FALSE(v.sold_out);
    CHECK(mentions(v.failures, "did not run out"));
  }
  SECTION("the same without --expect-sellout passes") {
    sellout_input in{"prod_hot", 1, 10, 6, 0, false};
    CHECK(check_sellout(in, acks, {}).passed);
  }
  SECTION("sold out (fewer left than one order takes), but never refused") {
    sellout_input in{"prod_hot", 2, 9, 1, 0, true};
    auto v = check_sellout(in, orders_of("prod_hot", 8), {});
    CHECK(v.sold_out);
    CHECK_FALSE(v.passed);
    CHECK(mentions(v.failures, "no checkout was refused with 409"));
  }
}

TEST_CASE("hot-sku: stock below zero or unknown after the run fails", "[bench][hotsku]") {
  auto acks = orders_of("prod_hot", 2);
  CHECK_FALSE(check_sellout({"prod_hot", 1, 10, -3, 1, false}, acks, {}).passed);
  auto unknown = check_sellout({"prod_hot", 1, 10, -1, 1, false}, acks, {});
  CHECK_FALSE(unknown.passed);
  CHECK(mentions(unknown.failures, "unknown"));
}
