#pragma once
/// SQL of carts. Blocking; called on worker threads only. Every statement is parameterised.

#include "core/commerce_model.hpp"

#include <pqxx/pqxx>

#include <optional>
#include <string>

namespace emporium::persistence::cart_store {

/// A new empty cart `id` of the customer, expiring in `ttl_s`. One statement, safe to run twice
/// with the same id: a second run answers the cart the first one made.
model::cart insert_cart(pqxx::transaction_base& tx, const std::string& id,
                        const std::string& customer_id, int ttl_s);

/// A cart that has not expired.
std::optional<model::cart> find_cart(pqxx::transaction_base& tx, const std::string& id);

/// Writes the items if the cart is still at `expected_version`; extends its expiry. One
/// statement, safe to run twice: a second run finds the cart at `expected_version` + 1 with
/// these items and answers it as it is (a retry after a commit whose answer was lost).
std::optional<model::cart> save_cart_items(pqxx::transaction_base& tx, const model::cart& c,
                                           std::int64_t expected_version, int ttl_s);

} // namespace emporium::persistence::cart_store
