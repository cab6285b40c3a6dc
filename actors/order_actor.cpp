#include "actors/order_actor.hpp"

#include "actors/order_logic.hpp"
#include "actors/order_saga.hpp"
#include "persistence/order_store.hpp"

#include <spdlog/spdlog.h>

#include <thread>

namespace emporium::actors {

namespace os = persistence::order_store;
namespace st = model::order_status;

namespace {

void apply_change(order_ptr self, const entity_env& env, const model::order_change& ch) {
  self->state.order = ch.placed;
  publish_stock(env, self->state.id, ch.stock);
  publish_points(env, ch);
}

/// The job that reads the order and the stock of its products as PostgreSQL has them.
auto reread_job(std::string id) {
  return [id = std::move(id)](persistence::backend& b) -> result<model::order_change> {
    pqxx::read_transaction tx{b.pg.connection()};
    model::order_change ch;
    if (auto o = os::find_order(tx, id)) {
      std::vector<std::string> ids;
      for (const auto& l : o->lines)
        ids.push_back(l.product_id);
      ch.stock = levels(os::stock_levels(tx, ids));
      ch.placed = std::move(*o);
    }
    return ch;
  };
}

/// After a change whose outcome is unknown (a lost answer) or that lost to another writer: the
/// order and the stock of its products as they are now, before anything else (a second attempt
/// as in refresh_stock; then the actor stops and the next message re-activates it).
void reread(order_ptr self, const entity_env& env, int attempts = 2) {
  db_await<model::order_change>(
    self, env, self->state.id, reread_job(self->state.id),
    [self, env](model::order_change& ch) {
      if (!ch.placed.id.empty())
        self->state.order = ch.placed;
      publish_stock(env, self->state.id, ch.stock);
    },
    [self, env, attempts](caf::error& err) {
      if (attempts > 1)
        return reread(self, env, attempts - 1);
      self->quit(std::move(err));
    });
}

using after_fn = std::function<void(const model::order_change&)>;

/// Runs `job` (a committed status change) and answers the new order to `rp`; `after` runs once
/// it committed.
template <class Job>
void change_into(order_ptr self, const entity_env& env, Job job,
                 caf::typed_response_promise<model::order> rp, after_fn after = {}) {
  db_await<model::order_change>(
    self, env, self->state.id, std::move(job),
    [self, env, rp, after](model::order_change& ch) mutable {
      apply_change(self, env, ch);
      if (after)
        after(ch);
      rp.deliver(ch.placed);
    },
    [self, env, rp](caf::error& e) mutable {
      rp.deliver(e);
      // The row may have moved on without this actor (another node, a lost answer that
      // committed): reload it, and the stock it may have given back.
      reread(self, env);
    });
}

/// change_into a new response promise.
template <class Job>
caf::typed_response_promise<model::order> change(order_ptr self, const entity_env& env, Job job) {
  auto rp = self->make_response_promise<model::order>();
  change_into(self, env, std::move(job), rp);
  return rp;
}

/// The job of a cancellation from status `from` (stock back, payment marked refunded and
/// points back if paid; the provider's refund follows on a payment worker).
auto cancel_job(model::order o, std::string from) {
  return [o = std::move(o),
          from = std::move(from)](persistence::backend& b) -> result<model::order_change> {
    pqxx::work tx{b.pg.connection()};
    auto done = os::cancel_order(tx, o, from);
    if (!done)
      return failure{errc::conflict, "the order changed meanwhile; retry", {}};
    auto fresh = os::find_order(tx, o.id);
    tx.commit();
    catalog_changed_by(b, done->changes);
    model::order_change ch;
    ch.placed = std::move(*fresh);
    ch.stock = levels(done->changes);
    if (done->customer_points) {
      ch.customer_points = *done->customer_points;
      ch.customer_version = done->customer_version;
    }
    return ch;
  };
}

/// The job of a plain status transition (ship, deliver).
auto transition_job(model::order o, std::string to) {
  return
    [o = std::move(o), to = std::move(to)](persistence::backend& b) -> result<model::order_change> {
      pqxx::work tx{b.pg.connection()};
      auto moved = os::transition(tx, o, to);
      if (!moved)
        return failure{errc::conflict, "the order changed meanwhile; retry", {}};
      tx.commit();
      model::order_change ch;
      ch.placed = std::move(*moved);
      return ch;
    };
}

// -- payment ----------------------------------------------------------------------------------

/// Whether `f` says for sure that the provider charged nothing: it declined, or kept failing
/// transiently. Anything else (a deadline, a provider that could not be asked) leaves the
/// outcome unknown.
bool nothing_charged(const failure& f) {
  return f.code == errc::payment_declined || f.code == errc::upstream_failed;
}

/// Whether the order went through a payment attempt (only those change a pending order's
/// version: placement writes version 1), so that the provider may hold a charge of it.
bool attempted(const model::order& o) {
  return o.status == st::paying || o.version > 1;
}

/// Runs the provider call `job` (made with provider_deadline(env)) on a payment worker and
/// continues with `ok` or `err` on the order actor, which handles other messages meanwhile.
/// Jobs of one order go to one payment worker, in the order they were sent: a reconciliation's
/// look-up runs after a charge of the same order that was still queued or running there.
template <class T, class OnOk, class OnErr>
void call_provider(order_ptr self, const entity_env& env, db_job job, OnOk ok, OnErr err) {
  request_within(self, env.deadlines, env.payment_workers->for_key(self->state.id),
                 provider_deadline(env), std::move(job))
    .then([ok](T& x) mutable { ok(x); }, [err](caf::error& e) mutable { err(e); });
}

/// A charge as the payment workers hold it (run_charges).
struct charge_input {
  std::shared_ptr<payment_provider> payments;
  charge_request request;
  std::chrono::steady_clock::time_point until; ///< no retry starts that could end past it
};

/// A charge's outcome settled: captured (the reference), declined, or, while it fails
/// transiently and its deadline allows another attempt, asked again alone after a backoff (on
/// the payment worker: nobody else waits for these sleeps).
result<std::string> settle_charge(const charge_input& c, charge_result charged) {
  constexpr int attempts = 3;
  for (int attempt = 1;; ++attempt) {
    if (charged.outcome == charge_result::kind::declined)
      return failure{errc::payment_declined, charged.message, {}};
    if (charged.outcome == charge_result::kind::captured)
      return charged.reference;
    // Full jitter, up to 80, 160 ms; no attempt is started that could end past the deadline.
    if (attempt == attempts
        || std::chrono::steady_clock::now() + std::chrono::milliseconds(160) >= c.until)
      return failure{errc::upstream_failed,
                     "the payment provider failed " + std::to_string(attempt)
                       + " times; nothing was charged, retry later",
                     {}};
    persistence::backoff_sleep(attempt + 2);
    const auto& r = c.request;
    charged = c.payments->charge(r.payment_method, r.amount_cents, r.currency, r.reference);
  }
}

/// The charges a payment worker holds at once (make_batch_job), asked of the provider in one
/// call: the simulated provider writes them to its ledger in one statement and one commit.
/// Answers each charge's reference, in order. Every charge is of this node's one provider. A
/// charge that fails transiently holds the batch's answers through its backoffs (at most about
/// 240 ms), as it held the worker's next jobs when each charge was a job of its own.
std::vector<result<std::string>> run_charges(persistence::backend&,
                                             const std::vector<const charge_input*>& charges) {
  std::vector<charge_request> requests;
  requests.reserve(charges.size());
  for (const auto* c : charges)
    requests.push_back(c->request);
  auto outcomes = charges.front()->payments->charge_many(requests);
  std::vector<result<std::string>> out;
  out.reserve(charges.size());
  bool captured = false;
  for (std::size_t i = 0; i < charges.size(); ++i) {
    out.push_back(settle_charge(*charges[i], std::move(outcomes.at(i))));
    captured = captured || out.back().ok();
  }
  if (captured && injected_faults().pause_after_charge)
    std::this_thread::sleep_for(std::chrono::seconds(60));
  return out;
}

/// The charge of order `o` with `method`, a job the payment worker may run with others
/// (run_charges). Answers the charge reference.
db_job charge_job(const entity_env& env, const model::order& o, std::string method) {
  auto deadline = provider_deadline(env);
  return make_batch_job<run_charges>(
    charge_input{env.payments,
                 {std::move(method), o.total_cents, o.currency, charge_reference(o.id)},
                 std::chrono::steady_clock::now() + deadline},
    deadline);
}

/// Whether the provider charged this order: "captured", "refunded" or "none".
auto find_charge_job(const entity_env& env, std::string id) {
  return
    [payments = env.payments, id = std::move(id)](persistence::backend&) -> result<std::string> {
      switch (payments->find(charge_reference(id))) {
        case charge_state::captured: return std::string{"captured"};
        case charge_state::refunded: return std::string{"refunded"};
        case charge_state::none: break;
      }
      return std::string{"none"};
    };
}

/// Refunds the charge `reference` at the provider (refund_job), on a payment worker. Whatever
/// happens to it, the refund stays owed in PostgreSQL until the provider confirmed it, and the
/// sweeper asks again.
void refund_charge(order_ptr self, const entity_env& env, std::string reference) {
  auto order_id = self->state.id;
  call_provider<bool>(
    self, env, refund_job(env, order_id, reference),
    [order_id, reference](bool ok) {
      if (!ok)
        spdlog::error("the provider refused the refund of {} (order {}); asked again later",
                      reference, order_id);
    },
    [order_id, reference](caf::error& e) {
      spdlog::warn("refund of {} (order {}) not confirmed: {}; asked again later", reference,
                   order_id, to_failure(e).detail);
    });
}

/// The intents of orders, pending_payment → paying with their charge references; a batch of a
/// database worker (make_batch_job). One statement per batch, no BEGIN and COMMIT. Run again
/// after a lost connection, it finds each order paying under its reference and answers it as
/// it is. `orders`: each order as its actor has it.
std::vector<result<model::order>> begin_payments(persistence::backend& b,
                                                 const std::vector<const model::order*>& orders) {
  pqxx::nontransaction tx{b.pg.connection()};
  std::vector<os::payment_intent> intents;
  for (const auto* o : orders)
    intents.push_back({o, charge_reference(o->id)});
  return answers_or(os::begin_payments(tx, intents),
                    failure{errc::conflict, "the order is no longer awaiting payment", {}});
}

/// Nothing was charged: paying → pending_payment (a no-op when it is not paying any more: the
/// order as PostgreSQL has it then).
auto abandon_payment_job(model::order o) {
  return [o = std::move(o)](persistence::backend& b) -> result<model::order> {
    pqxx::work tx{b.pg.connection()};
    auto back = os::abandon_payment(tx, o);
    if (!back)
      back = os::find_order(tx, o.id);
    tx.commit();
    return std::move(*back);
  };
}

/// A captured charge to record: the order as its actor has it, and the charge. `live`: the
/// record step of a payment that was just charged (the test fault fail_record_after_charge
/// applies to it only).
struct charge_record {
  model::order order;
  std::string provider;
  std::string reference;
  bool live = false;
};

/// The outcomes: each charge becomes its order's payment (paid, loyalty points), if the order
/// still awaits payment; else the order as it is. A batch of a database worker
/// (make_batch_job): one statement per batch, atomic by itself, no BEGIN and COMMIT. Run again
/// after a lost connection, it finds the orders paid and reads them as they are.
std::vector<result<model::order_change>> record_charges(
  persistence::backend& b, const std::vector<const charge_record*>& records) {
  std::vector<result<model::order_change>> out(
    records.size(),
    failure{errc::unavailable, "the payment could not be recorded (injected fault)", {}});
  std::vector<os::captured_payment> payments;
  std::vector<std::size_t> at;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = *records[i];
    if (r.live && injected_faults().fail_record_after_charge)
      continue;
    payments.push_back({&r.order, model::payment_info{"captured", r.provider, r.reference},
                        order_logic::loyalty_points(r.order.subtotal_cents)});
    at.push_back(i);
  }
  pqxx::nontransaction tx{b.pg.connection()};
  auto paid = os::record_payments(tx, payments);
  for (std::size_t k = 0; k < paid.size(); ++k) {
    model::order_change ch;
    if (paid[k]) {
      ch.placed = std::move(paid[k]->order);
      ch.customer_points = paid[k]->customer_points;
      ch.customer_version = paid[k]->customer_version;
    } else { // paid already (by this very charge, when run twice), or cancelled: as it is
      const auto& r = *records[at[k]];
      auto now = os::find_order(tx, r.order.id);
      if (now && now->status == st::cancelled && !now->payment) {
        // Captured after the order was cancelled unpaid: the refund is owed from now on,
        // recorded before anyone is told, so the sweeper asks for it whatever happens next.
        os::owe_refund(tx, *now, r.provider, r.reference);
        now = os::find_order(tx, r.order.id);
      }
      ch.placed = std::move(*now);
    }
    out[at[k]] = std::move(ch);
  }
  return out;
}

using settled_fn = std::function<void(caf::expected<model::order>)>;

/// Records the captured charge `reference` and calls `done` with the paid order. Recording
/// twice (a retried job, a reconciliation after a live payment) finds the order paid with this
/// very reference and changes nothing. If the order cannot take the charge any more (it was
/// cancelled meanwhile), that charge, and only that one, is refunded.
void record_charge(order_ptr self, const entity_env& env, std::string reference, bool live,
                   settled_fn done) {
  auto o = *self->state.order;
  db_await_job<model::order_change>(
    self, env, o.id,
    make_batch_job<record_charges>(charge_record{o, env.payments->name(), reference, live},
                                   env.db_timeout),
    [self, env, reference, done](model::order_change& ch) {
      const auto& now = ch.placed;
      bool ours = now.payment && now.payment->reference == reference;
      if (ours && now.status != st::cancelled) {
        apply_change(self, env, ch);
        return done(now);
      }
      self->state.order = now;
      // Cancelled: its payment (this charge) is a refund owed, marked by the cancellation or,
      // for a charge captured after it, by record_charges. Asked now; the sweeper asks again
      // until the provider confirms it (a second ask changes nothing there). Not cancelled and
      // not ours (a reconciliation put the order back meanwhile): refunded now, as before; a
      // payment row there would keep the order from ever being paid.
      if (now.status == st::cancelled || !ours)
        refund_charge(self, env, reference);
      done(make_domain_error(errc::conflict,
                             "the order is no longer awaiting payment; the "
                             "charge is refunded"));
    },
    [self, env, done](caf::error& e) {
      // Unknown: the record may have committed. The order stays paying until reconciled.
      reread(self, env);
      done(e);
    });
}

/// Settles an order that went through a payment attempt whose outcome this actor does not know:
/// asks the provider about its reference. Charged → recorded as paid (as a live payment would
/// have been), then `on_paid`. Not charged → `otherwise` (back to pending_payment, or the
/// cancellation that waited for the answer). The provider not answering → `on_error`.
template <class OnPaid, class Otherwise, class OnError>
void reconcile(order_ptr self, const entity_env& env, OnPaid on_paid, Otherwise otherwise,
               OnError on_error) {
  self->state.settling = true;
  call_provider<std::string>(
    self, env, make_job(find_charge_job(env, self->state.id), provider_deadline(env)),
    [self, env, on_paid, otherwise](std::string& state) mutable {
      if (state == "captured" && self->state.order) {
        spdlog::info("order {}: its charge was found at the provider; recording it",
                     self->state.id);
        return record_charge(self, env, charge_reference(self->state.id), false,
                             [self, on_paid](caf::expected<model::order> o) mutable {
                               self->state.settling = false;
                               on_paid(std::move(o));
                             });
      }
      self->state.settling = false;
      otherwise();
    },
    [self, on_error](caf::error& e) mutable {
      self->state.settling = false;
      spdlog::warn("order {}: the provider could not be asked about its payment: {}",
                   self->state.id, to_failure(e).detail);
      on_error(e);
    });
}

/// A payment: the intent, the charge (awaited with a deadline, while the actor answers other
/// messages), the outcome.
caf::typed_response_promise<model::order> pay(order_ptr self, const entity_env& env,
                                              std::string method) {
  auto rp = self->make_response_promise<model::order>();
  auto finish = [self, rp](caf::expected<model::order> o) mutable {
    self->state.settling = false;
    if (o)
      rp.deliver(std::move(*o));
    else
      rp.deliver(std::move(o.error()));
  };
  self->state.settling = true;
  db_await_job<model::order>(
    self, env, self->state.id, make_batch_job<begin_payments>(*self->state.order, env.db_timeout),
    [self, env, method, finish](model::order& o) mutable {
      self->state.order = o;
      call_provider<std::string>(
        self, env, charge_job(env, o, method),
        [self, env, finish](std::string& reference) {
          record_charge(self, env, reference, true, finish);
        },
        [self, env, finish](caf::error& e) mutable {
          if (!nothing_charged(to_failure(e))) {
            // The charge may have happened: reconciliation finds out.
            return finish(make_domain_error(errc::timeout,
                                            "the payment's outcome is not known "
                                            "yet; the order shows it shortly"));
          }
          db_await<model::order>(
            self, env, self->state.id, abandon_payment_job(*self->state.order),
            [self, e, finish](model::order& o) mutable {
              self->state.order = o;
              finish(e);
            },
            [self, env, e, finish](caf::error&) mutable {
              reread(self, env); // left paying: reconciliation puts it back
              finish(e);
            });
        });
    },
    [self, env, finish](caf::error& e) mutable {
      reread(self, env);
      finish(e);
    });
  return rp;
}

} // namespace

caf::timespan provider_deadline(const entity_env& env) {
  return env.call_timeout / 2;
}

db_job refund_job(const entity_env& env, std::string order_id, std::string reference) {
  return make_job(
    [payments = env.payments, owed = os::owed_refund{std::move(order_id), std::move(reference)}](
      persistence::backend& b) -> result<bool> {
      {
        // Counted as an attempt before the provider is asked: whatever ends this one (a
        // refusal, a provider down, a deadline), the next waits longer.
        pqxx::nontransaction tx{b.pg.connection()};
        os::settle_refund(tx, owed, false);
      }
      bool confirmed = payments->refund(owed.reference);
      if (confirmed) {
        pqxx::nontransaction tx{b.pg.connection()};
        os::settle_refund(tx, owed, true);
      }
      return confirmed;
    },
    provider_deadline(env));
}

order_entity_actor::behavior_type order_entity(order_ptr self, entity_env env, std::string id,
                                               bool fresh) {
  self->state.id = id;
  // Activated by its order_create (a placement's id, just made): no row to read yet.
  if (!fresh)
    load_then<model::order>(
      self, env, id,
      [id](persistence::backend& b) -> result<model::order> {
        pqxx::read_transaction tx{b.pg.connection()};
        return os::find_order(tx, id).value_or(model::order{});
      },
      [self, env](model::order o) {
        if (!o.id.empty())
          self->state.order = std::move(o);
        else
          self->send(self, absent_atom_v);
      });
  auto current = [self](const model::principal& who) -> model::order* {
    auto& o = self->state.order;
    return o && may_see(who, o->customer_id) ? &*o : nullptr;
  };
  // A cancellation; a paid order's charge is refunded at the provider once it committed.
  auto cancel = [self, env](const model::order& o, caf::typed_response_promise<model::order> rp) {
    std::optional<std::string> refund;
    if (o.status == st::paid && o.payment)
      refund = o.payment->reference; // the payment being refunded, and no other
    change_into(self, env, cancel_job(o, o.status), rp,
                [self, env, refund](const model::order_change&) {
                  if (refund)
                    refund_charge(self, env, *refund);
                });
  };
  // An unpaid order that went through a payment attempt is cancelled only once the provider
  // said it holds no charge of it: one captured late pays it instead.
  auto settle_then_cancel = [self, env, cancel](caf::typed_response_promise<model::order> rp) {
    reconcile(
      self, env,
      [rp](caf::expected<model::order> o) mutable {
        if (o)
          rp.deliver(make_domain_error(errc::conflict, "the order was paid meanwhile"));
        else
          rp.deliver(std::move(o.error()));
      },
      [self, cancel, rp]() mutable {
        auto& now = self->state.order;
        if (now && now->status == st::pending_payment)
          cancel(*now, rp);
        else
          rp.deliver(make_domain_error(errc::conflict, "the order changed meanwhile; retry"));
      },
      [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
  };
  return {
    [self, env](order_create& msg) -> caf::result<model::order> {
      if (self->state.order)
        return make_domain_error(errc::conflict, "order " + self->state.id + " exists");
      auto lines = order_logic::normalise_lines(msg.req.items);
      // The callers checked these; the saga must not start a run it cannot finish in time.
      auto errors = order_logic::order_limit_errors(lines, env.settings->orders);
      if (!errors.empty())
        return make_domain_error(errc::unprocessable, "the order exceeds an order's limits",
                                 std::move(errors));
      auto rp = self->make_response_promise<model::order>();
      place_order(self, env, std::move(msg.req), std::move(lines), rp);
      return rp;
    },
    [self, current](const order_read& msg) -> caf::result<model::order> {
      auto* o = current(msg.who);
      if (!o)
        return absent("order", self->state.id);
      return *o;
    },
    [self, env, current](order_pay& msg) -> caf::result<model::order> {
      auto* o = current(msg.who);
      if (!o)
        return absent("order", self->state.id);
      if (self->state.settling)
        return make_domain_error(errc::conflict, "a payment of this order is in progress");
      if (auto next = order_logic::next_status(o->status, order_logic::order_action::pay); !next)
        return make_domain_error(errc::conflict, next.error().detail);
      return pay(self, env, std::move(msg.payment_method));
    },
    [self, current, cancel,
     settle_then_cancel](const order_cancel& msg) -> caf::result<model::order> {
      const auto& who = msg.who;
      auto* o = current(who);
      if (!o)
        return absent("order", self->state.id);
      if (self->state.settling)
        return make_domain_error(errc::conflict, "a payment of this order is in progress");
      auto action = who.admin ? order_logic::order_action::cancel_admin
                              : order_logic::order_action::cancel_owner;
      if (auto next = order_logic::next_status(o->status, action); !next)
        return make_domain_error(errc::conflict, next.error().detail);
      auto rp = self->make_response_promise<model::order>();
      if (o->status == st::pending_payment && attempted(*o))
        settle_then_cancel(rp);
      else
        cancel(*o, rp);
      return rp;
    },
    [self, env, current](const order_ship& msg) -> caf::result<model::order> {
      auto* o = current(msg.who);
      if (!o)
        return absent("order", self->state.id);
      if (!msg.who.admin)
        return make_domain_error(errc::forbidden, "only an admin ships orders");
      auto next = order_logic::next_status(o->status, order_logic::order_action::ship);
      if (!next)
        return make_domain_error(errc::conflict, next.error().detail);
      return change(self, env, transition_job(*o, *next));
    },
    [self, env, current](const order_deliver& msg) -> caf::result<model::order> {
      auto* o = current(msg.who);
      if (!o)
        return absent("order", self->state.id);
      if (!msg.who.admin)
        return make_domain_error(errc::forbidden, "only an admin marks orders delivered");
      auto next = order_logic::next_status(o->status, order_logic::order_action::deliver);
      if (!next)
        return make_domain_error(errc::conflict, next.error().detail);
      return change(self, env, transition_job(*o, *next));
    },
    // The sweeper's nudge: an unpaid order past its time is cancelled, a payment left paying is
    // reconciled. Either may come twice (two sweeps, two nodes): each step is conditional.
    [self, env, cancel, settle_then_cancel](const order_expire&) {
      auto& o = self->state.order;
      if (!o || self->state.settling)
        return;
      if (o->status == st::paying) {
        reconcile(
          self, env, [](caf::expected<model::order>) {},
          [self, env] {
            db_await<model::order>(
              self, env, self->state.id, abandon_payment_job(*self->state.order),
              [self](model::order& fresh) { self->state.order = fresh; },
              [self, env](caf::error&) { reread(self, env); });
          },
          [](caf::error&) {});
        return;
      }
      if (o->status != st::pending_payment || o->payment_due_at_ms > now_ms())
        return;
      // Cancelled exactly once: the transaction is conditional on the status.
      auto rp = self->make_response_promise<model::order>();
      if (attempted(*o))
        settle_then_cancel(rp);
      else
        cancel(*o, rp);
    },
    absent_handler(self, env, [self] { return !self->state.order; }),
    passivate_handler(self),
  };
}

} // namespace emporium::actors
