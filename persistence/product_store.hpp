#pragma once
/// SQL for products. Blocking; called on worker threads only.

#include "core/model.hpp"
#include "persistence/backend.hpp"

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

/// The product's row read in a read-only transaction of its own. Entities activate from here:
/// PostgreSQL only, never a Redis copy (the active actor is its product's cache).
std::optional<model::product> load(backend& b, const std::string& id);

} // namespace emporium::persistence::product_store
