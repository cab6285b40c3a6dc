#pragma once
/// The retention service: deletes expired sessions, expired carts never checked out, old
/// Idempotency-Key records and old outbox events (persistence/retention_store.hpp), at start
/// and then every `retention.interval_s`, straight on while a run finds full batches. Every node
/// runs one; a PostgreSQL advisory lock lets one delete at a time, the others skip that run.

#include "actors/entity_env.hpp"

namespace emporium::actors {

caf::behavior retention_service(caf::event_based_actor* self, entity_env env);

} // namespace emporium::actors
