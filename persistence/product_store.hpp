#pragma once
/// SQL for products, and their cache encoding. Blocking; called on worker threads only.

#include "persistence/model.hpp"

#include <pqxx/pqxx>

#include <optional>
#include <string>

namespace emporium::persistence::product_store {

std::optional<model::product> find(pqxx::transaction_base& tx, const std::string& id);

/// Inserts a new product; throws pqxx::unique_violation when the sku is taken.
model::product insert(pqxx::transaction_base& tx, const std::string& id,
                      const model::product_draft& draft);

/// Writes `next` if the row still has `expected_version`; nothing when it moved on meanwhile.
std::optional<model::product> update(pqxx::transaction_base& tx, const model::product& next,
                                     std::int64_t expected_version);

model::product_page list(pqxx::transaction_base& tx, const model::product_query& query);

/// The Redis key of a product.
std::string cache_key(const std::string& id);

/// The cache encoding (JSON, with the version and raw timestamps).
std::string encode(const model::product& p);

/// Decodes a cached value; nothing when it is not a well-formed product (treated as a miss).
std::optional<model::product> decode(const std::string& text);

} // namespace emporium::persistence::product_store
