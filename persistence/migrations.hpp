#pragma once
/// Versioned schema migrations, compiled into the binary, applied in order, each in its own
/// transaction together with its row in `schema_migrations`. Concurrent nodes serialise on an
/// advisory lock, so two servers starting at once apply each migration exactly once.

#include "persistence/pg.hpp"

#include <string>
#include <vector>

namespace emporium::persistence {

struct migration {
  int version;
  std::string name;
  std::string sql;
};

/// Every migration this build knows, in version order.
const std::vector<migration>& migrations();

/// Applies the pending ones; returns the versions applied now. Throws on failure (start-up error).
std::vector<int> migrate(pg_session& session);

/// The highest applied version, 0 for an empty database.
int schema_version(pg_session& session);

} // namespace emporium::persistence
