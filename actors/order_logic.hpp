#pragma once
/// The rules of orders as plain functions (no actors), so that each is tested on its own: the
/// order state machine, the limits of one order, shipping quotes (of an order, or of a cart
/// priced as one), loyalty points and tiers (earned by paid orders), order totals.

#include "config/settings.hpp"
#include "core/commerce_model.hpp"

#include <string>
#include <vector>

namespace emporium::actors::order_logic {

/// What may be done to an order, and by whom.
enum class order_action {
  pay,          ///< owner pays
  cancel_owner, ///< owner cancels (only while unpaid)
  cancel_admin, ///< admin cancels (unpaid, or paid: refunded)
  ship,         ///< admin
  deliver,      ///< admin
  expire,       ///< the payment timeout
};

/// The status after `action`, or errc::conflict when the transition is not allowed.
result<std::string> next_status(const std::string& current, order_action action);

/// Shipping for a parcel: zone by destination country × weight bracket, free from the
/// currency's threshold. errc::unprocessable when no zone, rate or bracket fits.
result<std::int64_t> shipping_quote(const config::shipping_settings& table,
                                    const std::string& country, const std::string& currency,
                                    std::int64_t subtotal_cents, std::int64_t weight_grams);

/// Whether some zone serves `country` (a quote can still fail on weight or currency).
bool ships_to(const config::shipping_settings& table, const std::string& country);

/// 1 point per whole currency unit of the subtotal.
std::int64_t loyalty_points(std::int64_t subtotal_cents);

/// bronze, silver or gold.
std::string loyalty_tier(std::int64_t points, const config::loyalty_settings& tiers);

/// Fills subtotal (from the lines), shipping and total of `o`; a failure when the lines mix
/// currencies or the address cannot be served.
result<bool> price_order(model::order& o, const config::shipping_settings& table);

/// The limits of one order (orders.max_lines lines, orders.max_units_per_line units of one
/// product), wherever an order is made of lines: a cart's checkout, the order's placement, and
/// POST /orders. One error per breach: "items" when there are too many lines, and
/// "items[i].quantity" for each line over the unit limit. Empty: within the limits.
std::vector<field_error> order_limit_errors(const std::vector<model::line_request>& lines,
                                            const config::orders_settings& limits);

/// Merges lines for the same product (summing quantities) and sorts them by product id: the
/// fixed order in which stock is reserved, so that concurrent orders never wait on each other.
std::vector<model::line_request> normalise_lines(std::vector<model::line_request> lines);

} // namespace emporium::actors::order_logic
