#pragma once
/// SQL of carts. Blocking; called on worker threads only. Every statement is parameterised.

#include "core/commerce_model.hpp"

#include <pqxx/pqxx>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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

/// A cart to create: insert_carts.
struct new_cart {
  std::string id;
  std::string customer_id;
};

/// insert_cart for several carts in one statement per run of distinct ids (a batch of a
/// database worker): each one's row, in order, or nothing where its id is another customer's.
std::vector<std::optional<model::cart>> insert_carts(pqxx::transaction_base& tx,
                                                     const std::vector<const new_cart*>& carts,
                                                     int ttl_s);

/// save_cart_items for several carts, each at its own `version` expected, in one statement per
/// run of distinct ids: each one's row, in order, or nothing where the cart moved on.
std::vector<std::optional<model::cart>> save_carts_items(
  pqxx::transaction_base& tx, const std::vector<const model::cart*>& carts, int ttl_s);

} // namespace emporium::persistence::cart_store
