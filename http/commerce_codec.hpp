#pragma once
/// JSON of customers, sessions, carts and orders (DESIGN.md §3 shapes), and validation of their
/// requests. Like json_codec: every problem named by field, nothing invalid passes.

#include "config/settings.hpp"
#include "persistence/commerce_model.hpp"

#include <string>

namespace emporium::http::codec {

result<model::customer_draft> decode_customer_draft(const std::string& body);

struct login_request {
  std::string email;
  std::string password;
};
result<login_request> decode_login(const std::string& body);

/// POST /orders: items (1..max_lines, each 1..max_units of a product, a product listed twice
/// counted once) and shipping_address. Fills request_hash from the canonical JSON.
result<model::order_request> decode_order_request(const std::string& body, int max_lines,
                                                  std::int64_t max_units);

/// POST /carts/{id}/checkout: shipping_address only.
result<model::order_request> decode_checkout(const std::string& body);

/// PUT /carts/{id}/items/{product_id}: {"quantity": 0..max_units}.
result<std::int64_t> decode_quantity(const std::string& body, std::int64_t max_units);

/// POST /orders/{id}/payments: {"payment_method": "tok_..."}.
result<std::string> decode_payment(const std::string& body);

/// An Idempotency-Key header value: 1..255 visible ASCII characters.
bool valid_idempotency_key(std::string_view key);

std::string encode(const model::customer& c, const config::loyalty_settings& tiers);
std::string encode(const model::session_grant& g);
std::string encode(const model::cart_view& v);
std::string encode(const model::order& o);
std::string encode(const model::order_page& page);

} // namespace emporium::http::codec
