#pragma once
/// The order entity actor: runs its own placement (order_saga.hpp), then its status machine.
///
/// Paying an order (a saga step of its own; the provider is never called on a database worker):
/// 1. the intent: the order becomes `paying` with its charge reference (charge_reference: one
///    per order), in PostgreSQL;
/// 2. the charge, on a payment worker, retried with backoff on transient failures; the order
///    actor awaits it with a deadline but keeps answering (a payment or cancel meanwhile: 409);
/// 3. the outcome: captured → paid, payment row, loyalty points (one transaction); declined or
///    failed → back to pending_payment; unknown (deadline, crash) → left `paying`.
/// Reconciliation settles what is left `paying`: the sweeper nudges orders paying for longer
/// than a live payment can last (and at start), the order asks the provider about its
/// reference: charged → paid as above, not charged → back to pending_payment. The API shows
/// `paying` as pending_payment.
///
/// Cancelling a paid order marks its payment refunded in the cancellation's transaction; the
/// provider's refund follows on a payment worker (refund_job). Until the provider confirms it
/// the refund is owed (payments.refund_confirmed_at is null), and the sweeper asks again: a
/// refund lost to a crash, a deadline or a provider that was down is not lost for good.

#include "actors/entity_env.hpp"

namespace emporium::actors {

struct order_state {
  std::string id;
  std::optional<model::order> order;
  /// A payment, its reconciliation or an expiry check is talking to the provider: no second
  /// one starts meanwhile.
  bool settling = false;
  static inline const char* name = "order";
};

/// `fresh`: activated by its order_create (the manager knows), so there is no row to read.
order_entity_actor::behavior_type order_entity(
  order_entity_actor::stateful_pointer<order_state> self, entity_env env, std::string id,
  bool fresh);

/// How long the order actor waits for one provider job; a reconciliation waits for twice that
/// (the sweeper's threshold), so it never takes over a live payment that may still capture.
caf::timespan provider_deadline(const entity_env& env);

/// A payment worker's job: asks the provider to refund `reference`, the charge of order
/// `order_id` (idempotent there), and records it: as an attempt before asking (so the next one
/// waits longer, whatever ends this one), as confirmed once the provider says so
/// (order_store::settle_refund). Answers whether the provider confirmed it. Safe to run twice.
db_job refund_job(const entity_env& env, std::string order_id, std::string reference);

} // namespace emporium::actors
