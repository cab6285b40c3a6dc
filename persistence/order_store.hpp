#pragma once
/// SQL of orders: placement, status changes, payments, idempotency records, the stock they
/// change and the outbox. Blocking; called on worker threads only.
/// Every statement is parameterised; every change to stock or order status writes its outbox
/// event in the same transaction.

#include "core/commerce_model.hpp"

#include <pqxx/pqxx>

#include <optional>
#include <string>
#include <vector>

namespace emporium::persistence::order_store {

/// The new stock and version of a product after a committed order or cancellation.
struct stock_change {
  std::string product_id;
  std::int64_t stock = 0;
  std::int64_t version = 0;
};

struct idempotency_ref {
  std::string customer_id;
  std::string key;
  std::string request_hash;
};

/// Takes the stock of every line (conditionally: `stock >= quantity`), inserts the order and
/// its lines, the idempotency record and the events, and marks the cart checked out, all in
/// `tx`. Returns the stock changes, or the ids of the products that were short, or that the
/// customer already has `max_open_unpaid` unpaid orders (in both cases the caller must roll
/// back: nothing is to be committed). The cap is counted under a lock of the customer's row,
/// so concurrent placements through any number of nodes cannot exceed it.
struct placement {
  model::order stored; ///< with its committed version and timestamps
  std::vector<stock_change> changes;
  std::vector<std::string> short_products;
  std::int64_t open_unpaid = 0; ///< counted before this order
  bool over_unpaid_cap = false;
};
placement place_order(pqxx::transaction_base& tx, const model::order& o,
                      const std::optional<idempotency_ref>& idem,
                      const std::optional<std::string>& cart_id,
                      std::optional<int> max_open_unpaid = std::nullopt,
                      std::int64_t cart_version = 0);

/// One order of a batch given to place_orders: what place_order takes.
struct placement_request {
  model::order order;
  std::optional<idempotency_ref> idem;
  std::optional<std::string> cart_id;
  std::optional<int> max_open_unpaid;
  std::int64_t cart_version = 0;
};

/// The outcome of one order of a batch: placed (`stored` and `changes`), short of the products
/// `short_products`, over the unpaid cap, or `failed` (its idempotency key or cart conflicted:
/// errc::conflict; anything else the database refused). All but the first leave no trace.
struct batch_outcome {
  placement placed;
  std::optional<failure> failed;
  std::string sqlstate; ///< of `failed`: the database's error code
  std::string message;  ///< of `failed`: the database's message (for logs, never for clients)
  bool ok() const { return !failed && placed.short_products.empty() && !placed.over_unpaid_cap; }
};

/// Places the orders `batch` in `tx` with one statement (the SQL function
/// emporium_place_orders): each order all-or-nothing, the outcomes in the batch's order. The
/// orders placed are committed by the caller's commit, all together. Orders of one product in a
/// batch each see the stock the orders before them left: exactly those that fit are placed, and
/// the stock of a product is taken by one UPDATE for the whole batch. Each placed order writes
/// one stock_changed event per product (the stock after it) and its order_status event. The
/// function writes the batch with one statement per table; when one of those fails (a key or a
/// cart taken meanwhile, a constraint) it places the batch again order by order, each in a
/// subtransaction of its own (migration 9).
std::vector<batch_outcome> place_orders(pqxx::transaction_base& tx,
                                        const std::vector<const placement_request*>& batch);

/// The batch as place_orders hands it to emporium_place_orders: a JSON array of the orders, each
/// with how to place it (the format is described in migration 8).
std::string placement_batch_json(const std::vector<const placement_request*>& batch);

std::optional<model::order> find_order(pqxx::transaction_base& tx, const std::string& id);

/// Orders of a customer, newest first, keyset-paged on id.
model::order_page list_orders(pqxx::transaction_base& tx, const std::string& customer_id,
                              const std::optional<std::string>& before_id, int limit);

/// Whether a failure may be recorded under its Idempotency-Key and replayed: only a verdict on
/// the request itself (invalid input, unprocessable), which no later change of stock, carts or
/// orders can alter. Anything else is answered once and the key stays free for a retry.
bool replayable_failure(errc code);

/// A stored idempotency outcome: the order it created, or the failure it answered; or, when the
/// stored answer cannot be decoded, `unreadable` (neither is set).
struct idempotent_outcome {
  std::string request_hash;
  std::optional<model::order> placed;
  std::optional<failure> failed;
  bool unreadable = false;
};
/// The replayable outcome stored for the key. A stored failure that is not replayable (servers
/// of earlier versions recorded out-of-stock and not-found answers too) counts as none.
std::optional<idempotent_outcome> find_idempotent(pqxx::transaction_base& tx,
                                                  const std::string& customer_id,
                                                  const std::string& key);

/// Records a replayable failure (so a replay answers the same); false when the key was taken
/// meanwhile, or when `f` is not replayable (nothing is recorded then).
bool store_idempotent_failure(pqxx::transaction_base& tx, const idempotency_ref& idem,
                              const failure& f);

// The statements below that move an order on (`o`: the order as the caller last had it from
// PostgreSQL) return the order as it is now, the same as find_order would read it in this
// transaction, without reading it again.

/// Moves the order from its status `o.status` to `to` if it is still there; or nothing.
std::optional<model::order> transition(pqxx::transaction_base& tx, const model::order& o,
                                       const std::string& to);

/// Marks the order `paying` under the charge `reference` (the intent, written before the
/// provider is called); or nothing when it was neither pending payment nor paying under this
/// reference already (a run again after a lost answer). One statement.
std::optional<model::order> begin_payment(pqxx::transaction_base& tx, const model::order& o,
                                          const std::string& reference);

/// A payment intent: the order, and the reference it is to be charged under.
struct payment_intent {
  const model::order* order = nullptr;
  std::string reference;
};

/// begin_payment for several orders, in one statement per run of distinct orders (a batch of a
/// database worker): each one's answer, in order.
std::vector<std::optional<model::order>> begin_payments(pqxx::transaction_base& tx,
                                                        const std::vector<payment_intent>& intents);

/// Puts a `paying` order back to pending payment (nothing was charged); or nothing when it was
/// not paying any more.
std::optional<model::order> abandon_payment(pqxx::transaction_base& tx, const model::order& o);

/// The current stock and version of the products, as PostgreSQL has them.
std::vector<stock_change> stock_levels(pqxx::transaction_base& tx,
                                       const std::vector<std::string>& product_ids);

/// Records a captured payment, marks the order paid, credits loyalty points and writes the
/// order's event, once, in one statement (atomic without a transaction block). Nothing when the
/// order was neither paying nor pending payment any more.
struct paid_result {
  model::order order; ///< as it is now: paid with `payment`
  std::int64_t customer_points = 0;
  std::int64_t customer_version = 0;
};
std::optional<paid_result> record_payment(pqxx::transaction_base& tx, const model::order& o,
                                          const model::payment_info& payment, std::int64_t points);

/// A captured payment to record: record_payments.
struct captured_payment {
  const model::order* order = nullptr;
  model::payment_info payment;
  std::int64_t points = 0;
};

/// record_payment for several orders, in one statement per run of distinct orders of distinct
/// customers (a batch of a database worker): each one's answer, in order.
std::vector<std::optional<paid_result>> record_payments(pqxx::transaction_base& tx,
                                                        const std::vector<captured_payment>& paid);

/// Cancels the order if its status is still `from`: returns the stock of every line, marks a
/// captured payment refunded (the refund owed at the provider until it confirms it, see
/// refunds_owed) and takes back awarded points. Nothing when the status moved on.
struct cancel_result {
  std::int64_t order_version = 0;
  std::vector<stock_change> changes;
  std::optional<std::int64_t> customer_points;
  std::int64_t customer_version = 0;
};
std::optional<cancel_result> cancel_order(pqxx::transaction_base& tx, const model::order& o,
                                          const std::string& from);

/// Ids of unpaid orders whose payment time is over.
std::vector<std::string> overdue_orders(pqxx::transaction_base& tx, int limit);

/// Ids of orders `paying` for longer than `older_than_ms`: their payment's outcome was lost.
std::vector<std::string> stale_payments(pqxx::transaction_base& tx, int limit,
                                        std::int64_t older_than_ms);

/// The payment sweeper's advisory lock key (ASCII "emp-pay"): the same on every node, used by
/// no other lock (retention's is "emp-ret", migrations' its own).
inline constexpr long long payment_sweep_lock_key = 0x656d702d70617900LL;

/// A refund owed at the provider: the payment of a cancelled order, refunded in PostgreSQL by
/// the cancellation, whose refund the provider has not confirmed yet.
struct owed_refund {
  std::string order_id;
  std::string reference;
};

/// Refunds owed at `provider` (the node's; another provider's references mean nothing to it)
/// whose last attempt is older than `older_than_ms`, doubled for each attempt made (at most
/// 2^12 times: about 4.5 hours at the default 4 s).
std::vector<owed_refund> refunds_owed(pqxx::transaction_base& tx, int limit,
                                      std::int64_t older_than_ms, const std::string& provider);

/// Records a refund attempt: `confirmed`, the provider did it (idempotent); otherwise an
/// attempt is made (counted before the provider is asked), and the next waits longer.
void settle_refund(pqxx::transaction_base& tx, const owed_refund& r, bool confirmed);

/// Records the refund owed of a charge captured for `o` after `o` was cancelled unpaid (a
/// payment attempt's late capture): a payment row already refunded, so that the sweeper asks
/// for the refund until the provider confirms it. Nothing when `o` has a payment row.
void owe_refund(pqxx::transaction_base& tx, const model::order& o, const std::string& provider,
                const std::string& reference);

/// One sweep's work: the orders to nudge (those left `paying` longer than `stale_ms`, then the
/// overdue unpaid ones), at most `limit` of each, and at most `refund_limit` refunds owed at
/// `provider`.
struct sweep_work {
  std::vector<std::string> orders;
  std::vector<owed_refund> refunds;
};

/// Takes the payment sweep's transaction-scoped advisory lock first: nothing (no value) when
/// another node's sweep holds it, so one node reads at a time; the lock goes with the
/// transaction (or the connection of a node that died).
std::optional<sweep_work> sweep(pqxx::transaction_base& tx, int limit, std::int64_t stale_ms,
                                const std::string& provider, int refund_limit);

/// The entities that have events: their topics are "product:<id>" and "order:<id>".
enum class event_entity { product, order };

/// Appends an outbox event for the product or order `id` (whose row must exist) and returns its
/// seq: the row's event counter, bumped by the same statement, so one more than the entity's
/// previous event. The same statement notifies channel `emporium_events` (sent at commit).
std::int64_t insert_event(pqxx::transaction_base& tx, event_entity kind, const std::string& id,
                          const std::string& type, const std::string& payload_json);

/// JSON of an order, for idempotency records (the same shape decodes back).
std::string encode_order(const model::order& o);
std::optional<model::order> decode_order(const std::string& text);

} // namespace emporium::persistence::order_store
