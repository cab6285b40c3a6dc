#pragma once
/// SQL for products, and their cache encoding. Blocking; called on worker threads only.

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

/// The Redis key of a product.
std::string cache_key(const std::string& id);

/// The cache encoding (JSON, with the version and raw timestamps).
std::string encode(const model::product& p);

/// Decodes a cached value; nothing when it is not a well-formed product (treated as a miss).
std::optional<model::product> decode(const std::string& text);

/// Caches `p` unless Redis holds a newer version of it (or a newer tombstone): a copy read
/// before a change committed never lands after that change's invalidation. False when Redis
/// could not be reached.
bool cache_put(redis_cache& cache, const model::product& p, int ttl_s);

/// Invalidates the cached copy after a change committed the row at `version`: leaves a
/// tombstone of that version (a miss for readers), which older copies cannot overwrite.
bool forget_cached(redis_cache& cache, const std::string& id, std::int64_t version, int ttl_s);

/// Reads a product through the cache: Redis first (unless `use_cache` is false), then
/// PostgreSQL, whose row is then cached with cache_put.
std::optional<model::product> load(backend& b, const std::string& id, bool use_cache);

namespace testing {
/// Called by load() between its PostgreSQL read and its cache write, when set. Tests use it to
/// interleave a change deterministically; set only while no load runs.
extern void (*after_read)(backend& b, const model::product& read);
} // namespace testing

} // namespace emporium::persistence::product_store
