#include "persistence/migrations.hpp"

namespace emporium::persistence {

namespace {

// Any constant, as long as every node uses the same one.
constexpr long long migration_lock_key = 0x656d706f7269756dLL; // "emporium"

constexpr const char* create_migrations_table = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer     PRIMARY KEY,
  name       text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
))sql";

constexpr const char* lock_migrations = "SELECT pg_advisory_xact_lock($1)";
constexpr const char* is_applied = "SELECT 1 FROM schema_migrations WHERE version = $1";
constexpr const char* record_applied = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)";
constexpr const char* max_version = "SELECT coalesce(max(version), 0) FROM schema_migrations";

} // namespace

const std::vector<migration>& migrations() {
  static const std::vector<migration> all{
    {1, "products", R"sql(
CREATE TABLE products (
  id           text        PRIMARY KEY,
  sku          text        NOT NULL UNIQUE CHECK (length(sku) BETWEEN 1 AND 64),
  name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description  text        NOT NULL DEFAULT '',
  price_cents  bigint      NOT NULL CHECK (price_cents >= 0),
  currency     char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  category     text        NOT NULL DEFAULT 'uncategorized',
  stock        bigint      NOT NULL CHECK (stock >= 0),
  weight_grams bigint      NOT NULL DEFAULT 0 CHECK (weight_grams >= 0),
  images       jsonb       NOT NULL DEFAULT '[]'::jsonb,
  version      bigint      NOT NULL DEFAULT 1,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Keyset paging within a category walks this index; paging over all products walks the pkey.
CREATE INDEX products_category_id_idx ON products (category, id);
)sql"},
    {2, "admin_credentials", R"sql(
-- The admin key is stored only as a SHA-256 hash (it is 256 random bits, so no stretching is
-- needed). One row: the key generated at first start when none is configured.
CREATE TABLE admin_credentials (
  id         smallint    PRIMARY KEY CHECK (id = 1),
  key_hash   text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
)sql"},
  };
  return all;
}

std::vector<int> migrate(pg_session& session) {
  auto& conn = session.connection();
  {
    pqxx::work tx{conn};
    tx.exec_params(lock_migrations, migration_lock_key);
    tx.exec(create_migrations_table);
    tx.commit();
  }
  std::vector<int> applied;
  for (const auto& m : migrations()) {
    pqxx::work tx{conn};
    tx.exec_params(lock_migrations, migration_lock_key);
    if (!tx.exec_params(is_applied, m.version).empty())
      continue;
    tx.exec(m.sql);
    tx.exec_params(record_applied, m.version, m.name);
    tx.commit();
    applied.push_back(m.version);
  }
  return applied;
}

int schema_version(pg_session& session) {
  pqxx::work tx{session.connection()};
  if (tx.exec("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0].as<bool>() == false)
    return 0;
  return tx.exec(max_version)[0][0].as<int>();
}

} // namespace emporium::persistence
