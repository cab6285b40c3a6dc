#pragma once
/// Product search in PostgreSQL (full text, trigram fallback, filters, keyset paging, facets)
/// and its Redis cache. Blocking; called on worker threads only.
///
/// Caching: results are stored under the current *catalog version*, a random token in Redis
/// (catalog_version_key). Every write that changes what search shows deletes the token after
/// its commit and before its answer (catalog_changed); the next search makes a new one, so no
/// result computed before that write can be served after it. When the token can be neither
/// read nor made, search bypasses the cache. A failed delete makes the token a pending
/// invalidation (redis_cache): it is not read again before Redis deleted it. Every result
/// lives at most result_ttl_s, which bounds what a lost invalidation can leave stale.

#include "core/search_model.hpp"
#include "persistence/backend.hpp"

#include <pqxx/pqxx>

#include <optional>
#include <string>

namespace emporium::persistence::search_store {

/// The Redis key of the catalog version token.
inline constexpr const char* catalog_version_key = "emporium:catalog:version";

/// The lower bounds of the price bands of the facets, in minor units; the last band is open.
const std::vector<std::int64_t>& price_band_bounds();

/// Runs the search in `tx`: full text when the query has text, and, when full text matches
/// nothing (and no cursor says otherwise), the trigram similarity of the name. Sets planner
/// settings local to `tx`; give it a transaction of its own.
model::search_result search(pqxx::transaction_base& tx, const model::search_query& q);

/// Through the cache: the cached answer for `q` at the current catalog version, else
/// search() in a read-only transaction, then cached.
model::search_result search_cached(backend& b, const model::search_query& q);

/// Called by every write that changes a product's name, description, category, price,
/// currency or stock, after its commit and before its answer.
void catalog_changed(redis_cache& cache);

/// The cache key of `q` at catalog version `version` (a hash of the normalised query).
std::string cache_key(const std::string& version, const model::search_query& q);

/// The cache encoding of a result, and back (nothing when malformed: a miss).
std::string encode(const model::search_result& r);
std::optional<model::search_result> decode(const std::string& text);

/// The statements search sends, as text: the settings local to its transaction, then one page
/// statement per mode tried (by mode, sort and number of categories asked for). For
/// bench/search's pgbench scripts and the test that keeps them in step with this code.
std::string settings_statement();
std::string page_statement(model::search_mode mode, model::search_sort sort,
                           std::size_t categories);

/// How long a cached result lives at most, whatever the catalog does.
inline constexpr int result_ttl_s = 300;
static_assert(result_ttl_s <= longest_stale_s,
              "a lost invalidation must end within longest_stale_s");

} // namespace emporium::persistence::search_store
