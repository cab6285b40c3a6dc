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

/// The rows of the products `ids`, read by one statement of its own (no BEGIN and COMMIT): each
/// id's row, or none, in the order asked; an id asked twice is answered twice. Entities activate
/// from here, several in one statement when a database worker batches their loads: PostgreSQL
/// only, never a Redis copy (the active actor is its product's cache).
std::vector<std::optional<model::product>> load_many(backend& b,
                                                     const std::vector<const std::string*>& ids);

} // namespace emporium::persistence::product_store
