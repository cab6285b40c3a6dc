#pragma once
/// JSON of orders, and validation of order requests (POST /orders, checkout), payments and
/// Idempotency-Key headers.

#include "config/settings.hpp"
#include "core/commerce_model.hpp"

#include <string>

#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string_view>
#include <vector>

namespace emporium::http::codec {

/// POST /orders: items (1..max_lines, each 1..max_units of a product, a product listed twice
/// counted once) and shipping_address. Fills request_hash from the canonical JSON.
result<model::order_request> decode_order_request(const std::string& body, int max_lines,
                                                  std::int64_t max_units);

/// The order limit the line count does not cover: a product listed twice counts once, with
/// its quantities added, and must stay within `max_units`. The cart actor checks the same
/// limit; this is the one call to switch when both share one function of actors/ logic.
std::optional<failure> order_limits_problem(const std::vector<model::line_request>& items,
                                            std::int64_t max_units);

/// POST /carts/{id}/checkout: shipping_address only.
result<model::order_request> decode_checkout(const std::string& body);

/// POST /orders/{id}/payments: {"payment_method": "tok_..."}.
result<std::string> decode_payment(const std::string& body);

inline constexpr std::size_t idempotency_key_max_chars = 255;

/// An Idempotency-Key header value: 1..idempotency_key_max_chars visible ASCII characters.
bool valid_idempotency_key(std::string_view key);

std::string encode(const model::order& o);
std::string encode(const model::order_page& page);

/// The lines of an order or cart, as JSON (shared with the cart codec).
nlohmann::json lines_json(const std::vector<model::order_line>& lines);

} // namespace emporium::http::codec
