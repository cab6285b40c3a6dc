#include "actors/order_logic.hpp"

#include <algorithm>
#include <map>

namespace emporium::actors::order_logic {

namespace st = model::order_status;

result<std::string> next_status(const std::string& current, order_action action) {
  auto deny = [&current](const char* what) {
    if (current == st::paying)
      return result<std::string>{errc::conflict, std::string{"cannot "} + what
                                                   + " an order while its payment is in progress"};
    return result<std::string>{errc::conflict,
                               std::string{"cannot "} + what + " an order that is " + current};
  };
  switch (action) {
    case order_action::pay:
      if (current == st::pending_payment)
        return std::string{st::paid};
      return deny("pay");
    case order_action::cancel_owner:
      if (current == st::pending_payment)
        return std::string{st::cancelled};
      return deny("cancel");
    case order_action::cancel_admin:
      if (current == st::pending_payment || current == st::paid)
        return std::string{st::cancelled};
      return deny("cancel");
    case order_action::ship:
      if (current == st::paid)
        return std::string{st::shipped};
      return deny("ship");
    case order_action::deliver:
      if (current == st::shipped)
        return std::string{st::delivered};
      return deny("deliver");
    case order_action::expire:
      if (current == st::pending_payment)
        return std::string{st::cancelled};
      return deny("expire");
  }
  return deny("change");
}

result<std::int64_t> shipping_quote(const config::shipping_settings& table,
                                    const std::string& country, const std::string& currency,
                                    std::int64_t subtotal_cents, std::int64_t weight_grams) {
  const config::shipping_zone* zone = nullptr;
  for (const auto& z : table.zones)
    if (std::find(z.countries.begin(), z.countries.end(), country) != z.countries.end()) {
      zone = &z;
      break;
    }
  if (!zone)
    return result<std::int64_t>{errc::unprocessable, "no shipping zone serves " + country};
  const config::shipping_rate* bracket = nullptr;
  for (const auto& r : zone->rates)
    if (weight_grams <= r.max_grams) {
      bracket = &r;
      break;
    }
  if (!bracket)
    return result<std::int64_t>{errc::unprocessable, "the parcel (" + std::to_string(weight_grams)
                                                       + " g) is heavier than zone " + zone->name
                                                       + " ships"};
  auto price = bracket->cents.find(currency);
  if (price == bracket->cents.end())
    return result<std::int64_t>{errc::unprocessable,
                                "zone " + zone->name + " has no rate in " + currency};
  auto free = table.free_above_cents.find(currency);
  if (free != table.free_above_cents.end() && subtotal_cents >= free->second)
    return std::int64_t{0};
  return price->second;
}

bool ships_to(const config::shipping_settings& table, const std::string& country) {
  return std::any_of(table.zones.begin(), table.zones.end(), [&](const config::shipping_zone& z) {
    return std::find(z.countries.begin(), z.countries.end(), country) != z.countries.end();
  });
}

std::int64_t loyalty_points(std::int64_t subtotal_cents) {
  return subtotal_cents > 0 ? subtotal_cents / 100 : 0;
}

std::string loyalty_tier(std::int64_t points, const config::loyalty_settings& tiers) {
  if (points >= tiers.gold_points)
    return "gold";
  if (points >= tiers.silver_points)
    return "silver";
  return "bronze";
}

result<bool> price_order(model::order& o, const config::shipping_settings& table) {
  o.subtotal_cents = 0;
  std::int64_t weight = 0;
  for (const auto& l : o.lines) {
    o.subtotal_cents += l.unit_price_cents * l.quantity;
    weight += l.weight_grams * l.quantity;
  }
  auto quote = shipping_quote(table, o.shipping_address.country, o.currency, o.subtotal_cents,
                              weight);
  if (!quote)
    return quote.error();
  o.shipping_cents = *quote;
  o.total_cents = o.subtotal_cents + o.shipping_cents;
  return true;
}

std::vector<field_error> order_limit_errors(const std::vector<model::line_request>& lines,
                                            const config::orders_settings& limits) {
  std::vector<field_error> errors;
  if (lines.size() > static_cast<std::size_t>(limits.max_lines))
    errors.push_back({"items", "an order has at most " + std::to_string(limits.max_lines)
                                 + " lines, not " + std::to_string(lines.size())});
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (lines[i].quantity > limits.max_units_per_line)
      errors.push_back(
        {"items[" + std::to_string(i) + "].quantity",
         "at most " + std::to_string(limits.max_units_per_line) + " of one product per order"});
  return errors;
}

std::vector<model::line_request> normalise_lines(std::vector<model::line_request> lines) {
  std::map<std::string, std::int64_t> merged;
  for (auto& l : lines)
    merged[l.product_id] += l.quantity;
  std::vector<model::line_request> out;
  for (auto& [id, qty] : merged)
    out.push_back({id, qty});
  return out;
}

} // namespace emporium::actors::order_logic
