#include "actors/order_saga.hpp"

#include "actors/order_logic.hpp"
#include "actors/product_snapshot.hpp"
#include "persistence/order_store.hpp"
#include "persistence/search_store.hpp"

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
  std::vector<model::line_request> lines; ///< merged, in product id order
  std::size_t next = 0;
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

/// Tells the products `ids` their stock as PostgreSQL has it now, then calls `done`. Runs on the
/// order's worker, so it reads after any job of this order that was still queued or running
/// there (one whose answer timed out). A second attempt covers a read that expired while queued
/// behind that job: once the worker took it, that job was over.
template <class Done>
void refresh_stock(order_ptr self, const entity_env& env, std::vector<std::string> ids, Done done,
                   int attempts = 2) {
  db_await<model::order_change>(
    self, env, self->state.id,
    [ids](persistence::backend& b) -> result<model::order_change> {
      pqxx::read_transaction tx{b.pg.connection()};
      model::order_change ch;
      ch.stock = levels(os::stock_levels(tx, ids));
      return ch;
    },
    [self, env, done](model::order_change& ch) mutable {
      publish_stock(env, self->state.id, ch.stock);
      done();
    },
    [self, env, ids, done, attempts](caf::error&) mutable {
      if (attempts > 1)
        return refresh_stock(self, env, std::move(ids), std::move(done), attempts - 1);
      done();
    });
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
  std::optional<os::idempotency_ref> idem;
  if (s->req.idempotency_key)
    idem = os::idempotency_ref{o.customer_id, *s->req.idempotency_key, s->req.request_hash};
  auto cart_id = s->req.cart_id;
  auto cart_version = s->req.cart_version;
  auto max_unpaid = env.settings->orders.max_open_unpaid_per_customer;
  db_await<model::order_change>(
    self, env, o.id,
    [o, idem, cart_id, max_unpaid,
     cart_version](persistence::backend& b) -> result<model::order_change> {
      pqxx::work tx{b.pg.connection()};
      auto placed = os::place_order(tx, o, idem, cart_id, max_unpaid, cart_version);
      if (!placed.short_products.empty()) {
        tx.abort();
        std::vector<field_error> errs;
        for (const auto& id : placed.short_products)
          errs.push_back({"items", id + " is out of stock"});
        return failure{errc::out_of_stock, "insufficient stock", std::move(errs)};
      }
      if (placed.over_unpaid_cap) {
        tx.abort();
        // 409, not 429: waiting alone does not help soon (an unpaid order holds its stock
        // for orders.payment_timeout_s); paying or cancelling one of them does.
        return failure{errc::conflict,
                       "you have " + std::to_string(placed.open_unpaid)
                         + " unpaid orders, the most allowed at once; pay or cancel one first",
                       {}};
      }
      tx.commit();
      catalog_changed_by(b, placed.changes);
      model::order_change ch;
      ch.placed = std::move(placed.stored);
      ch.stock = levels(placed.changes);
      return ch;
    },
    [self, env, s](model::order_change& ch) {
      self->state.order = ch.placed;
      publish_stock(env, self->state.id, ch.stock);
      s->rp.deliver(std::move(ch.placed));
    },
    [self, env, s](caf::error& e) {
      if (to_failure(e).code == errc::out_of_stock)
        return fail(self, env, s, e); // answered by the job itself: rolled back
      // The outcome is unknown (a timeout, a lost connection): the transaction may have taken
      // the stock. The products re-read it before this actor goes.
      release_all(self, env, *s);
      s->rp.deliver(e);
      std::vector<std::string> ids;
      for (const auto& l : s->held)
        ids.push_back(l.product_id);
      refresh_stock(self, env, std::move(ids), [self] { self->quit(); });
    });
}

/// Holds the lines one after another, in product id order.
void hold_next(order_ptr self, const entity_env& env, std::shared_ptr<saga> s) {
  if (s->next == s->lines.size()) {
    if (s->fatal)
      return fail(self, env, s, s->fatal);
    if (s->mixed_currencies)
      return fail(self, env, s,
                  make_domain_error(errc::invalid_input,
                                    "the products of one order must share one currency"));
    if (!s->unknown_lines.empty())
      return fail(self, env, s,
                  make_domain_error(errc::invalid_input, "unknown products", s->unknown_lines));
    if (!s->short_lines.empty()) {
      std::string ids;
      for (const auto& e : s->short_lines)
        ids += (ids.empty() ? "" : ", ") + e.message.substr(0, e.message.find(' '));
      return fail(
        self, env, s,
        make_domain_error(errc::out_of_stock, "insufficient stock for " + ids, s->short_lines));
    }
    return commit_placement(self, env, s);
  }
  auto index = s->next++;
  const auto line = s->lines[index];
  self
    ->request(env.dir->products(line.product_id), env.call_timeout,
              product_reserve{line.product_id, self->state.id, line.quantity})
    .await(
      [self, env, s, line](model::reservation& r) {
        if (s->currency.empty())
          s->currency = r.currency;
        else if (s->currency != r.currency)
          s->mixed_currencies = true;
        s->held.push_back(model::order_line{line.product_id, r.name, r.unit_price_cents,
                                            line.quantity, r.weight_grams});
        hold_next(self, env, s);
      },
      [self, env, s, line](caf::error& e) {
        auto f = to_failure(e);
        if (f.code == errc::out_of_stock)
          s->short_lines.push_back({"items", f.detail});
        else if (f.code == errc::not_found)
          s->unknown_lines.push_back({"items", line.product_id + " does not exist"});
        else if (!s->fatal)
          s->fatal = e;
        hold_next(self, env, s);
      });
}

} // namespace

void place_order(order_ptr self, const entity_env& env, model::order_request req,
                 std::vector<model::line_request> lines,
                 caf::typed_response_promise<model::order> rp) {
  auto s = std::make_shared<saga>();
  s->lines = std::move(lines);
  s->req = std::move(req);
  s->rp = std::move(rp);
  hold_next(self, env, s);
}

} // namespace emporium::actors
