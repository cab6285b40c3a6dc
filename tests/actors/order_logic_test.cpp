// The commerce rules as plain functions (actors/order_logic): the order state machine as a
// table over every (status, action) pair, shipping quotes, loyalty points and tiers, order
// pricing and the merging/sorting of order lines.

#include "actors/order_logic.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

using namespace emporium;
using namespace emporium::actors;
using order_logic::order_action;

namespace {

const char* action_name(order_action a) {
  switch (a) {
    case order_action::pay: return "pay";
    case order_action::cancel_owner: return "cancel_owner";
    case order_action::cancel_admin: return "cancel_admin";
    case order_action::ship: return "ship";
    case order_action::deliver: return "deliver";
    case order_action::expire: return "expire";
  }
  return "?";
}

model::order_line line(std::string id, std::int64_t price, std::int64_t qty,
                       std::int64_t grams = 0) {
  return model::order_line{std::move(id), "name", price, qty, grams};
}

model::order order_to(const std::string& country, const std::string& currency) {
  model::order o;
  o.currency = currency;
  o.shipping_address.country = country;
  return o;
}

} // namespace

TEST_CASE("order state machine: every (status, action) pair, allowed or conflict",
          "[commerce][logic]") {
  namespace st = model::order_status;
  const std::vector<std::string> statuses{st::pending_payment, st::paid, st::shipped, st::delivered,
                                          st::cancelled};
  const std::vector<order_action> actions{order_action::pay,          order_action::cancel_owner,
                                          order_action::cancel_admin, order_action::ship,
                                          order_action::deliver,      order_action::expire};
  // The only allowed transitions; every other pair is a 409.
  const std::map<std::pair<std::string, order_action>, std::string> allowed{
    {{st::pending_payment, order_action::pay}, st::paid},
    {{st::pending_payment, order_action::cancel_owner}, st::cancelled},
    {{st::pending_payment, order_action::cancel_admin}, st::cancelled},
    {{st::pending_payment, order_action::expire}, st::cancelled},
    {{st::paid, order_action::cancel_admin}, st::cancelled},
    {{st::paid, order_action::ship}, st::shipped},
    {{st::shipped, order_action::deliver}, st::delivered},
  };
  int pairs = 0, allowed_seen = 0;
  for (const auto& status : statuses)
    for (auto action : actions) {
      ++pairs;
      INFO("status " << status << ", action " << action_name(action));
      auto next = order_logic::next_status(status, action);
      auto it = allowed.find({status, action});
      if (it != allowed.end()) {
        ++allowed_seen;
        REQUIRE(next.ok());
        CHECK(*next == it->second);
      } else {
        REQUIRE_FALSE(next.ok());
        CHECK(next.error().code == errc::conflict);
        CHECK_FALSE(next.error().detail.empty());
      }
    }
  CHECK(pairs == 30);
  CHECK(allowed_seen == 7);
}

TEST_CASE("order state machine: an unknown status allows nothing", "[commerce][logic]") {
  for (auto action : {order_action::pay, order_action::cancel_owner, order_action::cancel_admin,
                      order_action::ship, order_action::deliver, order_action::expire}) {
    auto next = order_logic::next_status("refunded", action);
    REQUIRE_FALSE(next.ok());
    CHECK(next.error().code == errc::conflict);
  }
}

TEST_CASE("order state machine: nothing happens to an order while its payment is in progress",
          "[commerce][logic]") {
  for (auto action : {order_action::pay, order_action::cancel_owner, order_action::cancel_admin,
                      order_action::ship, order_action::deliver, order_action::expire}) {
    auto next = order_logic::next_status(model::order_status::paying, action);
    REQUIRE_FALSE(next.ok());
    CHECK(next.error().code == errc::conflict);
    // The internal status is not named: the API shows such an order as pending_payment.
    CHECK(next.error().detail.find("paying") == std::string::npos);
  }
  CHECK(model::order_status::shown(model::order_status::paying) == "pending_payment");
  CHECK(model::order_status::shown(model::order_status::paid) == "paid");
}

TEST_CASE("shipping quote: zones by country, weight brackets, per currency",
          "[commerce][logic][shipping]") {
  config::shipping_settings table; // the built-in rate table
  // Domestic (US), each bracket's upper bound inclusive.
  CHECK(*order_logic::shipping_quote(table, "US", "USD", 100, 0) == 499);
  CHECK(*order_logic::shipping_quote(table, "US", "USD", 100, 1'000) == 499);
  CHECK(*order_logic::shipping_quote(table, "US", "USD", 100, 1'001) == 999);
  CHECK(*order_logic::shipping_quote(table, "US", "USD", 100, 5'000) == 999);
  CHECK(*order_logic::shipping_quote(table, "US", "USD", 100, 5'001) == 1'999);
  CHECK(*order_logic::shipping_quote(table, "US", "USD", 100, 30'000) == 1'999);
  CHECK(*order_logic::shipping_quote(table, "US", "EUR", 100, 500) == 459);
  // Europe and international.
  CHECK(*order_logic::shipping_quote(table, "DE", "EUR", 100, 500) == 799);
  CHECK(*order_logic::shipping_quote(table, "FR", "USD", 100, 2'000) == 1'499);
  CHECK(*order_logic::shipping_quote(table, "GB", "EUR", 100, 10'000) == 2'599);
  CHECK(*order_logic::shipping_quote(table, "JP", "USD", 100, 500) == 1'499);
  CHECK(*order_logic::shipping_quote(table, "AU", "EUR", 100, 30'000) == 5'499);
}

TEST_CASE("shipping quote: free from the currency's threshold", "[commerce][logic][shipping]") {
  config::shipping_settings table;
  // USD: free from 10,000; EUR: free from 9,000 (inclusive).
  CHECK(*order_logic::shipping_quote(table, "US", "USD", 9'999, 500) == 499);
  CHECK(*order_logic::shipping_quote(table, "US", "USD", 10'000, 500) == 0);
  CHECK(*order_logic::shipping_quote(table, "DE", "EUR", 8'999, 500) == 799);
  CHECK(*order_logic::shipping_quote(table, "DE", "EUR", 9'000, 500) == 0);
  // The threshold is per currency: 9,000 USD cents is not free.
  CHECK(*order_logic::shipping_quote(table, "DE", "USD", 9'000, 500) == 899);
  // A currency without a threshold is never free.
  table.zones[0].rates[0].cents["GBP"] = 300;
  CHECK(*order_logic::shipping_quote(table, "US", "GBP", 1'000'000, 500) == 300);
  // Free also for heavy parcels, as long as a bracket fits.
  CHECK(*order_logic::shipping_quote(table, "US", "USD", 50'000, 30'000) == 0);
}

TEST_CASE(
  "shipping quote: unknown country, unknown currency or a too heavy parcel is "
  "unprocessable",
  "[commerce][logic][shipping]") {
  config::shipping_settings table;
  auto unknown_country = order_logic::shipping_quote(table, "AQ", "USD", 100, 100);
  REQUIRE_FALSE(unknown_country.ok());
  CHECK(unknown_country.error().code == errc::unprocessable);
  CHECK(unknown_country.error().detail.find("AQ") != std::string::npos);

  auto unknown_currency = order_logic::shipping_quote(table, "US", "JPY", 100, 100);
  REQUIRE_FALSE(unknown_currency.ok());
  CHECK(unknown_currency.error().code == errc::unprocessable);

  auto heavy = order_logic::shipping_quote(table, "US", "USD", 100, 30'001);
  REQUIRE_FALSE(heavy.ok());
  CHECK(heavy.error().code == errc::unprocessable);
  // Not even free shipping makes a too heavy parcel shippable.
  auto heavy_free = order_logic::shipping_quote(table, "US", "USD", 1'000'000, 30'001);
  REQUIRE_FALSE(heavy_free.ok());
  CHECK(heavy_free.error().code == errc::unprocessable);

  config::shipping_settings empty;
  empty.zones.clear();
  auto none = order_logic::shipping_quote(empty, "US", "USD", 100, 100);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == errc::unprocessable);

  // Whether a zone serves the country at all, apart from weight and currency (a cart shows
  // a too heavy parcel without a quote, but a country nobody serves is the caller's error).
  CHECK(order_logic::ships_to(table, "US"));
  CHECK(order_logic::ships_to(table, "DE"));
  CHECK_FALSE(order_logic::ships_to(table, "AQ"));
  CHECK_FALSE(order_logic::ships_to(empty, "US"));
}

TEST_CASE("loyalty: 1 point per whole currency unit, tiers by threshold",
          "[commerce][logic][loyalty]") {
  CHECK(order_logic::loyalty_points(0) == 0);
  CHECK(order_logic::loyalty_points(99) == 0);
  CHECK(order_logic::loyalty_points(100) == 1);
  CHECK(order_logic::loyalty_points(199) == 1);
  CHECK(order_logic::loyalty_points(12'345) == 123);
  CHECK(order_logic::loyalty_points(-500) == 0);

  config::loyalty_settings tiers; // bronze 0, silver 1,000, gold 5,000
  CHECK(order_logic::loyalty_tier(0, tiers) == "bronze");
  CHECK(order_logic::loyalty_tier(999, tiers) == "bronze");
  CHECK(order_logic::loyalty_tier(1'000, tiers) == "silver");
  CHECK(order_logic::loyalty_tier(4'999, tiers) == "silver");
  CHECK(order_logic::loyalty_tier(5'000, tiers) == "gold");
  CHECK(order_logic::loyalty_tier(1'000'000, tiers) == "gold");

  config::loyalty_settings custom;
  custom.silver_points = 10;
  custom.gold_points = 20;
  CHECK(order_logic::loyalty_tier(9, custom) == "bronze");
  CHECK(order_logic::loyalty_tier(10, custom) == "silver");
  CHECK(order_logic::loyalty_tier(20, custom) == "gold");
}

TEST_CASE("price_order: subtotal from the lines, shipping by total weight, total",
          "[commerce][logic]") {
  config::shipping_settings table;
  SECTION("below the free threshold, weight summed over quantities") {
    auto o = order_to("US", "USD");
    o.lines = {line("prod_a", 1'250, 2, 300), line("prod_b", 999, 1, 500)};
    // 2 × 300 g + 500 g = 1,100 g: the second bracket.
    auto r = order_logic::price_order(o, table);
    REQUIRE(r.ok());
    CHECK(o.subtotal_cents == 2 * 1'250 + 999);
    CHECK(o.shipping_cents == 999);
    CHECK(o.total_cents == o.subtotal_cents + 999);
  }
  SECTION("free shipping above the threshold") {
    auto o = order_to("DE", "EUR");
    o.lines = {line("prod_a", 4'500, 2, 100)};
    REQUIRE(order_logic::price_order(o, table).ok());
    CHECK(o.subtotal_cents == 9'000);
    CHECK(o.shipping_cents == 0);
    CHECK(o.total_cents == 9'000);
  }
  SECTION("stale totals are recomputed") {
    auto o = order_to("US", "USD");
    o.subtotal_cents = 123;
    o.shipping_cents = 456;
    o.total_cents = 789;
    o.lines = {line("prod_a", 100, 3)};
    REQUIRE(order_logic::price_order(o, table).ok());
    CHECK(o.subtotal_cents == 300);
    CHECK(o.shipping_cents == 499);
    CHECK(o.total_cents == 799);
  }
  SECTION("an address in no zone is unprocessable") {
    auto o = order_to("AQ", "USD");
    o.lines = {line("prod_a", 100, 1)};
    auto r = order_logic::price_order(o, table);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::unprocessable);
  }
  SECTION("too heavy is unprocessable") {
    auto o = order_to("US", "USD");
    o.lines = {line("prod_a", 100, 31, 1'000)};
    auto r = order_logic::price_order(o, table);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::unprocessable);
  }
}

TEST_CASE("normalise_lines merges one product's lines and sorts by product id",
          "[commerce][logic]") {
  std::vector<model::line_request> in{
    {"prod_c", 1}, {"prod_a", 2}, {"prod_b", 3}, {"prod_a", 4}, {"prod_c", 5}};
  auto out = order_logic::normalise_lines(in);
  REQUIRE(out.size() == 3);
  CHECK(out[0].product_id == "prod_a");
  CHECK(out[0].quantity == 6);
  CHECK(out[1].product_id == "prod_b");
  CHECK(out[1].quantity == 3);
  CHECK(out[2].product_id == "prod_c");
  CHECK(out[2].quantity == 6);

  CHECK(order_logic::normalise_lines({}).empty());

  // The order of the request does not matter: A then B and B then A give the same lines.
  auto ab = order_logic::normalise_lines({{"prod_a", 1}, {"prod_b", 2}});
  auto ba = order_logic::normalise_lines({{"prod_b", 2}, {"prod_a", 1}});
  REQUIRE(ab.size() == ba.size());
  for (std::size_t i = 0; i < ab.size(); ++i) {
    CHECK(ab[i].product_id == ba[i].product_id);
    CHECK(ab[i].quantity == ba[i].quantity);
  }
}

TEST_CASE("order limits: too many lines and too many units of one product are named",
          "[commerce][logic][limits]") {
  config::orders_settings limits;
  limits.max_lines = 2;
  limits.max_units_per_line = 5;
  std::vector<model::line_request> lines{{"prod_a", 5}, {"prod_b", 1}};
  CHECK(order_logic::order_limit_errors(lines, limits).empty());
  lines[1].quantity = 6;
  auto over_units = order_logic::order_limit_errors(lines, limits);
  REQUIRE(over_units.size() == 1);
  CHECK(over_units[0].field == "items[1].quantity");
  lines.push_back({"prod_c", 7});
  auto both = order_logic::order_limit_errors(lines, limits);
  REQUIRE(both.size() == 3);
  CHECK(both[0].field == "items");
  CHECK(both[1].field == "items[1].quantity");
  CHECK(both[2].field == "items[2].quantity");
}
