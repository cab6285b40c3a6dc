#include "persistence/credentials.hpp"

#include "core/ids.hpp"

namespace emporium::persistence {

namespace {

constexpr const char* select_key = "SELECT key_hash FROM admin_credentials WHERE id = 1";
constexpr const char* insert_key =
  "INSERT INTO admin_credentials (id, key_hash) VALUES (1, $1) ON CONFLICT (id) DO NOTHING";

} // namespace

admin_key_state ensure_admin_key(pg_session& session,
                                 const std::optional<std::string>& configured) {
  if (configured)
    return {core::sha256_hex(*configured), std::nullopt};
  pqxx::work tx{session.connection()};
  if (auto rows = tx.exec(select_key); !rows.empty())
    return {rows[0][0].as<std::string>(), std::nullopt};
  auto key = core::random_hex(32);
  auto hash = core::sha256_hex(key);
  auto inserted = tx.exec_params(insert_key, hash).affected_rows() == 1;
  if (!inserted) {
    auto rows = tx.exec(select_key);
    tx.commit();
    return {rows.at(0)[0].as<std::string>(), std::nullopt};
  }
  tx.commit();
  return {hash, key};
}

} // namespace emporium::persistence
