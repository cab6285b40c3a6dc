#include "actors/order_saga.hpp"

#include "actors/order_logic.hpp"
#include "actors/placement_committer.hpp"
#include "actors/product_snapshot.hpp"
#include "persistence/order_store.hpp"
#include "persistence/search_store.hpp"

#include <algorithm>
#include <optional>

namespace emporium::actors {

namespace os = persistence::order_store;
namespace st = model::order_status;

void catalog_changed_by(persistence::backend& b, const std::vector<os::stock_change>& changes) {
  // Search shows whether a product is in stock. The products themselves have no copy outside
  // their actors, which learn the committed stock from publish_stock.
  if (!changes.empty())
    persistence::search_store::catalog_changed(b.cache);
}

std::vector<model::stock_level> levels(const std::vector<os::stock_change>& changes) {
  std::vector<model::stock_level> out;
  for (const auto& c : changes)
    out.push_back({c.product_id, c.stock, c.version});
  return out;
}

void publish_stock(const entity_env& env, const std::string& order_id,
                   const std::vector<model::stock_level>& stock) {
  for (const auto& s : stock) {
    // The node's older snapshot is withheld first: a read after this order's answer goes to the
    // product actor, behind this message, until the actor publishes the new stock.
    if (env.snapshots)
      env.snapshots->withhold(s.product_id, s.version);
    caf::anon_send(env.dir->products(s.product_id),
                   product_stock{s.product_id, order_id, s.stock, s.version});
  }
}

void publish_points(const entity_env& env, const model::order_change& ch) {
  if (ch.customer_points >= 0)
    caf::anon_send(env.dir->customers(ch.placed.customer_id),
                   customer_points{ch.placed.customer_id, ch.customer_points, ch.customer_version});
}

namespace {

struct saga {
  model::order_request req;
  std::vector<model::line_request> lines;               ///< merged, in product id order
  std::vector<std::optional<model::reservation>> terms; ///< per line, once its hold answered
  std::size_t pending = 0;                              ///< holds not answered yet
  std::vector<model::order_line> held;
  std::vector<field_error> short_lines;
  std::vector<field_error> unknown_lines;
  std::string currency; ///< of the first held line; every line must share it
  bool mixed_currencies = false;
  caf::error fatal;
  caf::typed_response_promise<model::order> rp;
};

void release_all(order_ptr self, const entity_env& env, const saga& s) {
  for (const auto& l : s.held)
    caf::anon_send(env.dir->products(l.product_id), product_release{l.product_id, self->state.id});
}

void fail(order_ptr self, const entity_env& env, const std::shared_ptr<saga>& s, caf::error e) {
  release_all(self, env, *s);
  s->rp.deliver(std::move(e));
  self->quit(); // the order never existed: nothing to keep active
}

/// Tells the products `ids` their stock as PostgreSQL has it now, then calls `done`. Runs where
/// the order's placement ran (the committer, else the order's worker), so it reads after the
/// placement, even one whose answer timed out while it was still queued or running there. A
/// second attempt covers a read that expired while queued behind it: once it was taken, that
/// placement was over.
template <class Done>
void refresh_stock(order_ptr self, const entity_env& env, std::vector<std::string> ids, Done done,
                   int attempts = 2) {
  auto ok = [self, env, done](model::order_change& ch) mutable {
    publish_stock(env, self->state.id, ch.stock);
    done();
  };
  auto err = [self, env, ids, done, attempts](caf::error&) mutable {
    if (attempts > 1)
      return refresh_stock(self, env, std::move(ids), std::move(done), attempts - 1);
    done();
  };
  if (const auto* placer = env.pool->placer()) {
    request_within(self, env.deadlines, *placer, env.db_timeout, placement_stock_read{ids})
      .await([ok](model::order_change& ch) mutable { ok(ch); },
             [err](caf::error& e) mutable { err(e); });
    return;
  }
  db_await<model::order_change>(
    self, env, self->state.id,
    [ids](persistence::backend& b) -> result<model::order_change> {
      pqxx::nontransaction tx{b.pg.connection()}; // one statement: no BEGIN and COMMIT
      model::order_change ch;
      ch.stock = levels(os::stock_levels(tx, ids));
      return ch;
    },
    ok, err);
}

/// All lines are held: price the order and commit it in one transaction.
void commit_placement(order_ptr self, const entity_env& env, std::shared_ptr<saga> s) {
  model::order o;
  o.id = self->state.id;
  o.customer_id = s->req.customer_id;
  o.status = st::pending_payment;
  o.lines = s->held;
  o.shipping_address = s->req.shipping_address;
  o.currency = s->currency;
  // Prices and names were copied from the products at hold time; later changes do not move them.
  o.payment_due_at_ms = now_ms() + std::int64_t{env.settings->orders.payment_timeout_s} * 1000;
  if (auto priced = order_logic::price_order(o, env.settings->shipping); !priced)
    return fail(self, env, s, make_domain_error(priced.error().code, priced.error().detail));
  os::placement_request preq;
  preq.order = std::move(o);
  if (s->req.idempotency_key)
    preq.idem = os::idempotency_ref{preq.order.customer_id, *s->req.idempotency_key,
                                    s->req.request_hash};
  preq.cart_id = s->req.cart_id;
  preq.cart_version = s->req.cart_version;
  preq.max_open_unpaid = env.settings->orders.max_open_unpaid_per_customer;
  auto placed = [self, env, s](model::order_change& ch) {
    self->state.order = ch.placed;
    publish_stock(env, self->state.id, ch.stock);
    s->rp.deliver(std::move(ch.placed));
  };
  auto failed = [self, env, s](caf::error& e) {
    // Refused by PostgreSQL (out of stock: rolled back, but a product had less there than its
    // actor held for this order, so its actor's stock is wrong), or the outcome is unknown (a
    // timeout, a lost connection: the transaction may have taken the stock). Either way the
    // products re-read their stock before this actor goes; nothing else would correct it.
    release_all(self, env, *s);
    s->rp.deliver(e);
    std::vector<std::string> ids;
    for (const auto& l : s->held)
      ids.push_back(l.product_id);
    refresh_stock(self, env, std::move(ids), [self] { self->quit(); });
  };
  if (const auto* placer = env.pool->placer()) {
    // Committed with the other placements of its batch; answered after that commit.
    request_within(
      self, env.deadlines, *placer, env.db_timeout,
      placement_job{std::move(preq), std::chrono::steady_clock::now() + env.db_timeout})
      .await([placed](model::order_change& ch) mutable { placed(ch); },
             [failed](caf::error& e) mutable { failed(e); });
    return;
  }
  db_await<model::order_change>(
    self, env, self->state.id,
    [preq](persistence::backend& b) -> result<model::order_change> {
      pqxx::work tx{b.pg.connection()};
      auto outcome = std::move(os::place_orders(tx, {&preq}).front());
      tx.commit();
      catalog_changed_by(b, outcome.placed.changes);
      return placement_answer(std::move(outcome));
    },
    placed, failed);
}

/// Every hold has answered: commit, or give back what was held and answer why not.
void holds_done(order_ptr self, const entity_env& env, std::shared_ptr<saga> s) {
  for (std::size_t i = 0; i < s->lines.size(); ++i) {
    const auto& r = s->terms[i];
    if (!r)
      continue;
    const auto& line = s->lines[i];
    if (s->currency.empty())
      s->currency = r->currency;
    else if (s->currency != r->currency)
      s->mixed_currencies = true;
    s->held.push_back(model::order_line{line.product_id, r->name, r->unit_price_cents,
                                        line.quantity, r->weight_grams});
  }
  if (s->fatal)
    return fail(self, env, s, s->fatal);
  if (s->mixed_currencies)
    return fail(self, env, s,
                make_domain_error(errc::unknown_reference,
                                  "the products of one order must share one currency"));
  // In product id order, whatever order the answers came in.
  auto by_message = [](const field_error& a, const field_error& b) {
    return a.message < b.message;
  };
  std::sort(s->unknown_lines.begin(), s->unknown_lines.end(), by_message);
  std::sort(s->short_lines.begin(), s->short_lines.end(), by_message);
  if (!s->unknown_lines.empty())
    return fail(self, env, s,
                make_domain_error(errc::unknown_reference, "unknown products", s->unknown_lines));
  if (!s->short_lines.empty()) {
    std::string ids;
    for (const auto& e : s->short_lines)
      ids += (ids.empty() ? "" : ", ") + e.message.substr(0, e.message.find(' '));
    return fail(
      self, env, s,
      make_domain_error(errc::out_of_stock, "insufficient stock for " + ids, s->short_lines));
  }
  commit_placement(self, env, s);
}

/// Asks every product for its hold at once; continues when all have answered. (The answers are
/// awaited: nothing else reaches this actor before the placement is decided.)
void hold_all(order_ptr self, const entity_env& env, std::shared_ptr<saga> s) {
  s->terms.resize(s->lines.size());
  s->pending = s->lines.size();
  if (s->pending == 0)
    return holds_done(self, env, s);
  for (std::size_t index = 0; index < s->lines.size(); ++index) {
    const auto& line = s->lines[index];
    request_within(self, env.deadlines, env.dir->products(line.product_id), env.call_timeout,
                   product_reserve{line.product_id, self->state.id, line.quantity})
      .await(
        [self, env, s, index](model::reservation& r) {
          s->terms[index] = std::move(r);
          if (--s->pending == 0)
            holds_done(self, env, s);
        },
        [self, env, s, index](caf::error& e) {
          const auto& line = s->lines[index];
          auto f = to_failure(e);
          if (f.code == errc::out_of_stock)
            s->short_lines.push_back({"items", f.detail});
          else if (f.code == errc::not_found)
            s->unknown_lines.push_back({"items", line.product_id + " does not exist"});
          else if (!s->fatal)
            s->fatal = e;
          if (--s->pending == 0)
            holds_done(self, env, s);
        });
  }
}

} // namespace

void place_order(order_ptr self, const entity_env& env, model::order_request req,
                 std::vector<model::line_request> lines,
                 caf::typed_response_promise<model::order> rp) {
  auto s = std::make_shared<saga>();
  s->lines = std::move(lines);
  s->req = std::move(req);
  s->rp = std::move(rp);
  hold_all(self, env, s);
}

} // namespace emporium::actors
