#pragma once
/// SQL of customers and their sessions. Blocking; called on worker threads only. Every
/// statement is parameterised.

#include "core/commerce_model.hpp"

#include <pqxx/pqxx>

#include <optional>
#include <string>

namespace emporium::persistence::customer_store {

/// Inserts a customer; throws pqxx::unique_violation when the email is taken (any case).
model::customer insert_customer(pqxx::transaction_base& tx, const std::string& id,
                                const std::string& email, const std::string& name,
                                const std::string& password_hash);

std::optional<model::customer> find_customer(pqxx::transaction_base& tx, const std::string& id);

struct credentials {
  std::string customer_id;
  std::string password_hash;
};
std::optional<credentials> find_credentials(pqxx::transaction_base& tx, const std::string& email);

/// Stores a session under the token's hash; returns its expiry (ms since the epoch).
std::int64_t insert_session(pqxx::transaction_base& tx, const std::string& token_hash,
                            const std::string& customer_id, int ttl_s);

struct session_row {
  std::string customer_id;
  std::int64_t expires_at_ms = 0;
};
/// A session that has not expired.
std::optional<session_row> find_session(pqxx::transaction_base& tx, const std::string& token_hash);

} // namespace emporium::persistence::customer_store
