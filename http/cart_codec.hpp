#pragma once
/// JSON of carts, and validation of a cart line's quantity.

#include "config/settings.hpp"
#include "core/commerce_model.hpp"

#include <string>

namespace emporium::http::codec {

/// PUT /carts/{id}/items/{product_id}: {"quantity": 0..max_units}.
result<std::int64_t> decode_quantity(const std::string& body, std::int64_t max_units);

std::string encode(const model::cart_view& v);

} // namespace emporium::http::codec
