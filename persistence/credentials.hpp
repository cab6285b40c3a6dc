#pragma once
/// The admin key. Configured (auth.admin_key), or generated once at first start: then only its
/// hash is stored and the key itself is shown once, to the operator who started the server.

#include "persistence/pg.hpp"

#include <optional>
#include <string>

namespace emporium::persistence {

struct admin_key_state {
  std::string key_hash;                 ///< SHA-256 hex of the key every admin request must carry
  std::optional<std::string> generated; ///< the new key, when this call created it
};

/// Resolves the admin key hash: the configured key wins; else the stored one; else a new key is
/// generated and stored (a node racing us may win, then its key is the one in force).
admin_key_state ensure_admin_key(pg_session& session, const std::optional<std::string>& configured);

} // namespace emporium::persistence
