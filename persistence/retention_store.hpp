#pragma once
/// Retention: deletes what nothing can need any more, in bounded batches. Blocking; called on
/// worker threads only.

#include <pqxx/pqxx>

#include <cstdint>

namespace emporium::persistence::retention_store {

struct limits {
  int expired_grace_h = 24;    ///< sessions, and carts never checked out, this long past expiry
  int idempotency_keys_h = 48; ///< Idempotency-Key records older than this
  int events_h = 168;          ///< outbox events older than this
  int batch_size = 1'000;      ///< rows of each kind, at most, per call
};

struct purge_result {
  bool ran = false; ///< false: another node held the retention lock, nothing was deleted
  std::int64_t sessions = 0;
  std::int64_t carts = 0;
  std::int64_t idempotency_keys = 0;
  std::int64_t events = 0;

  /// Some kind filled its batch: more may be left.
  bool more(int batch_size) const {
    return sessions >= batch_size || carts >= batch_size || idempotency_keys >= batch_size
           || events >= batch_size;
  }
};

/// Deletes up to `l.batch_size` rows of each kind in `tx`, which the caller commits. First takes
/// the cluster-wide retention lock for the rest of `tx` without waiting: when another
/// transaction (another node) holds it, deletes nothing and answers `ran == false`.
purge_result purge(pqxx::transaction_base& tx, const limits& l);

} // namespace emporium::persistence::retention_store
