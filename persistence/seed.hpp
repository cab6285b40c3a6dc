#pragma once
/// The demo catalog: realistic, varied names, categories and descriptions (so full-text search
/// has something to find), loaded with COPY so 100,000 products take seconds.

#include "persistence/pg.hpp"

#include <cstdint>

namespace emporium::persistence {

struct seed_options {
  std::int64_t products = 1000;
  bool if_empty = false; ///< do nothing when the catalog already has products
  std::uint32_t random_seed = 42;
};

/// Inserts the products in one transaction; returns how many were inserted.
std::int64_t seed_catalog(pg_session& session, const seed_options& opts);

} // namespace emporium::persistence
