#include "persistence/retention_store.hpp"

namespace emporium::persistence::retention_store {

namespace {

// Any constant, as long as every node uses the same one (and no other lock does).
constexpr long long retention_lock_key = 0x656d702d72657400LL; // "emp-ret"

// Held until the transaction ends: two nodes never delete at once, and a node that crashes
// mid-run releases it with its connection.
constexpr const char* try_lock_sql = "SELECT pg_try_advisory_xact_lock($1)";

// Each deletes one batch, oldest first, through the index on its age column; rows another
// transaction has locked are left for the next run instead of waited for.
constexpr const char* delete_sessions_sql =
  "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions "
  "WHERE expires_at < now() - make_interval(hours => $1) ORDER BY expires_at LIMIT $2 "
  "FOR UPDATE SKIP LOCKED)";

// A checked-out cart is kept: it names its order, and a checkout retried under its
// Idempotency-Key finds it.
constexpr const char* delete_carts_sql =
  "DELETE FROM carts WHERE id IN (SELECT id FROM carts WHERE order_id IS NULL "
  "AND expires_at < now() - make_interval(hours => $1) ORDER BY expires_at LIMIT $2 "
  "FOR UPDATE SKIP LOCKED)";

constexpr const char* delete_idempotency_sql =
  "DELETE FROM idempotency_keys WHERE (customer_id, key) IN (SELECT customer_id, key "
  "FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1) "
  "ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

constexpr const char* delete_events_sql =
  "DELETE FROM events WHERE id IN (SELECT id FROM events "
  "WHERE created_at < now() - make_interval(hours => $1) ORDER BY created_at LIMIT $2 "
  "FOR UPDATE SKIP LOCKED)";

} // namespace

purge_result purge(pqxx::transaction_base& tx, const limits& l) {
  purge_result out;
  if (!tx.exec_params(try_lock_sql, retention_lock_key).at(0)[0].as<bool>())
    return out;
  out.ran = true;
  out.sessions =
    tx.exec_params(delete_sessions_sql, l.expired_grace_h, l.batch_size).affected_rows();
  out.carts = tx.exec_params(delete_carts_sql, l.expired_grace_h, l.batch_size).affected_rows();
  out.idempotency_keys =
    tx.exec_params(delete_idempotency_sql, l.idempotency_keys_h, l.batch_size).affected_rows();
  out.events = tx.exec_params(delete_events_sql, l.events_h, l.batch_size).affected_rows();
  return out;
}

} // namespace emporium::persistence::retention_store
