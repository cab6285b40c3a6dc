#include "persistence/customer_store.hpp"

#include "persistence/pg.hpp"

namespace emporium::persistence::customer_store {

namespace {

#define EMPORIUM_MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

constexpr const char* insert_customer_sql =
  "INSERT INTO customers (id, email, name, password_hash) VALUES ($1, $2, $3, $4) "
  "RETURNING id, email, name, loyalty_points, version, " EMPORIUM_MS("created_at");

constexpr const char* select_customer_sql =
  "SELECT id, email, name, loyalty_points, version, " EMPORIUM_MS(
    "created_at") " FROM customers WHERE id = $1";

constexpr const char* select_credentials_sql =
  "SELECT id, password_hash FROM customers WHERE lower(email) = lower($1)";

constexpr const char* insert_session_sql =
  "INSERT INTO sessions (token_hash, customer_id, expires_at) "
  "VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING " EMPORIUM_MS("expires_at");

constexpr const char* select_session_sql = "SELECT customer_id, " EMPORIUM_MS(
  "expires_at") " FROM sessions WHERE token_hash = $1 AND expires_at > now()";

model::customer customer_from(const pqxx::row& r) {
  model::customer c;
  c.id = r[0].as<std::string>();
  c.email = r[1].as<std::string>();
  c.name = r[2].as<std::string>();
  c.loyalty_points = r[3].as<std::int64_t>();
  c.version = r[4].as<std::int64_t>();
  c.created_at_ms = r[5].as<std::int64_t>();
  return c;
}

} // namespace

model::customer insert_customer(pqxx::transaction_base& tx, const std::string& id,
                                const std::string& email, const std::string& name,
                                const std::string& password_hash) {
  return customer_from(exec_prepared(tx, "customer.insert_customer", insert_customer_sql, id, email,
                                     name, password_hash)
                         .at(0));
}

std::optional<model::customer> find_customer(pqxx::transaction_base& tx, const std::string& id) {
  auto rows = exec_prepared(tx, "customer.select_customer", select_customer_sql, id);
  if (rows.empty())
    return std::nullopt;
  return customer_from(rows[0]);
}

std::optional<credentials> find_credentials(pqxx::transaction_base& tx, const std::string& email) {
  auto rows = exec_prepared(tx, "customer.select_credentials", select_credentials_sql, email);
  if (rows.empty())
    return std::nullopt;
  return credentials{rows[0][0].as<std::string>(), rows[0][1].as<std::string>()};
}

std::int64_t insert_session(pqxx::transaction_base& tx, const std::string& token_hash,
                            const std::string& customer_id, int ttl_s) {
  return exec_prepared(tx, "customer.insert_session", insert_session_sql, token_hash, customer_id,
                       ttl_s)
    .at(0)[0]
    .as<std::int64_t>();
}

std::optional<session_row> find_session(pqxx::transaction_base& tx, const std::string& token_hash) {
  auto rows = exec_prepared(tx, "customer.select_session", select_session_sql, token_hash);
  if (rows.empty())
    return std::nullopt;
  return session_row{rows[0][0].as<std::string>(), rows[0][1].as<std::int64_t>()};
}

} // namespace emporium::persistence::customer_store
