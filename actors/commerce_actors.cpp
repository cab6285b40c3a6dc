#include "actors/commerce_actors.hpp"

#include "actors/commerce_logic.hpp"
#include "actors/manager.hpp"
#include "persistence/commerce_store.hpp"
#include "persistence/ids.hpp"
#include "persistence/product_store.hpp"
#include "persistence/search_store.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

namespace emporium::actors {

namespace cs = persistence::commerce_store;
namespace st = model::order_status;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// Another customer's resource is answered as absent: its id leaks nothing.
bool may_see(const model::principal& who, const std::string& owner) {
  return who.admin || (!who.customer_id.empty() && who.customer_id == owner);
}

caf::error absent(const char* what, const std::string& id) {
  return make_domain_error(errc::not_found, std::string{what} + " " + id + " does not exist");
}

/// Activation: loads the entity with `fn` (on its own worker) before any message is handled;
/// `set` receives it. A failed load stops the actor, and the next message re-activates it.
template <class T, class Self, class Fn, class Set>
void load_then(Self* self, const commerce_env& env, const std::string& key, Fn fn, Set set) {
  self->request(env.pool->for_key(key), env.db_timeout, make_job(std::move(fn), env.db_timeout))
    .await([set](T& x) mutable { set(std::move(x)); },
           [self](caf::error& err) { self->quit(std::move(err)); });
}

/// Runs a blocking job for the entity `key` on its worker; other messages wait meanwhile.
template <class T, class Self, class Fn, class OnOk, class OnErr>
void db_await(Self* self, const commerce_env& env, const std::string& key, Fn fn, OnOk ok,
              OnErr err) {
  self->request(env.pool->for_key(key), env.db_timeout, make_job(std::move(fn), env.db_timeout))
    .await([ok](T& x) mutable { ok(x); }, [err](caf::error& e) mutable { err(e); });
}

void forget_cached_products(persistence::backend& b, const std::vector<cs::stock_change>& changes) {
  // Products mirror their rows; a cached copy from before this transaction must not be loaded,
  // nor written back later by a load that read the row before this commit: a tombstone of the
  // committed version refuses such older copies.
  bool reached = true;
  for (const auto& c : changes)
    reached = persistence::product_store::forget_cached(b.cache, c.product_id, c.version,
                                                        b.cache_ttl_s)
              && reached;
  // Search shows whether a product is in stock. (A failed delete has marked the cache for a
  // flush, search results included.)
  if (!changes.empty() && reached)
    persistence::search_store::catalog_changed(b.cache);
}

std::vector<model::stock_level> levels(const std::vector<cs::stock_change>& changes) {
  std::vector<model::stock_level> out;
  for (const auto& c : changes)
    out.push_back({c.product_id, c.stock, c.version});
  return out;
}

/// Tells each product its committed stock.
template <class Self>
void publish_stock(Self* self, const commerce_env& env, const std::string& order_id,
                   const std::vector<model::stock_level>& stock) {
  // Managers are untyped routers: typed actors reach them with anon_send.
  (void) self;
  for (const auto& s : stock)
    caf::anon_send(env.dir->manager_for(entity_kind::product, s.product_id), s.product_id,
                   stock_atom_v, order_id, s.stock, s.version);
}

template <class Self>
void publish_points(Self* self, const commerce_env& env, const model::order_change& ch) {
  (void) self;
  if (ch.customer_points >= 0)
    caf::anon_send(env.dir->manager_for(entity_kind::customer, ch.placed.customer_id),
                   ch.placed.customer_id, points_atom_v, ch.customer_points, ch.customer_version);
}

} // namespace

// -- customer ---------------------------------------------------------------------------------

namespace {

using customer_ptr = customer_actor::stateful_pointer<customer_state>;

/// What a retry under the key answers, from the record `found` (none: a fresh outcome, not
/// replayed). A record that cannot be decoded is a fault of ours: 500, logged, never a crash.
result<model::order_outcome> replay_of(const std::optional<cs::idempotent_outcome>& found,
                                       const cs::idempotency_ref& idem) {
  if (!found)
    return model::order_outcome{};
  if (found->request_hash != idem.request_hash)
    return failure{errc::unprocessable, "this Idempotency-Key was used with a different request",
                   {}};
  if (found->unreadable) {
    spdlog::error("the stored answer of Idempotency-Key '{}' of customer {} cannot be decoded",
                  idem.key, idem.customer_id);
    return failure{errc::internal, "the stored answer for this Idempotency-Key cannot be read",
                   {}};
  }
  if (found->placed)
    return model::order_outcome{true, *found->placed};
  return *found->failed;
}

/// Asks a fresh order actor to place the request; records replayable failures for retries.
void place_new(customer_ptr self, const commerce_env& env, model::order_request req,
               caf::typed_response_promise<model::order_outcome> rp) {
  auto order_id = persistence::new_id("ord");
  self
    ->request(env.dir->manager_for(entity_kind::order, order_id), env.call_timeout, order_id,
              create_atom_v, req)
    .await(
      [rp](model::order& o) mutable { rp.deliver(model::order_outcome{false, std::move(o)}); },
      [self, env, req, rp](caf::error& err) mutable {
        auto f = to_failure(err);
        if (!req.idempotency_key) {
          rp.deliver(std::move(err));
          return;
        }
        cs::idempotency_ref idem{req.customer_id, *req.idempotency_key, req.request_hash};
        if (f.code == errc::conflict) {
          // Placed concurrently under the same key (another node): answer what it answered.
          // When nothing is recorded under it, the conflict was this placement's own (the cart
          // was checked out, too many unpaid orders): answered as it is, and not recorded.
          db_await<model::order_outcome>(
            self, env, self->state.id,
            [idem, f](persistence::backend& b) -> result<model::order_outcome> {
              pqxx::read_transaction tx{b.pg.connection()};
              auto replay = replay_of(cs::find_idempotent(tx, idem.customer_id, idem.key), idem);
              if (replay && !replay->replayed)
                return f;
              return replay;
            },
            [rp](model::order_outcome& o) mutable { rp.deliver(std::move(o)); },
            [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
          return;
        }
        // Only a verdict on the request itself is recorded. Out of stock, an unknown product or
        // any failure of a checkout (which the cart's contents decide, and the key's request
        // hash does not cover) may come out differently on a retry.
        if (!cs::replayable_failure(f.code) || req.cart_id) {
          rp.deliver(std::move(err));
          return;
        }
        db_await<bool>(
          self, env, self->state.id,
          [idem, f](persistence::backend& b) -> result<bool> {
            pqxx::work tx{b.pg.connection()};
            cs::store_idempotent_failure(tx, idem, f);
            tx.commit();
            return true;
          },
          [rp, err](bool) mutable { rp.deliver(err); },
          [rp, err](caf::error&) mutable { rp.deliver(err); });
      });
}

} // namespace

customer_actor::behavior_type customer_entity(customer_ptr self, commerce_env env, std::string id) {
  self->state.id = id;
  load_then<model::customer>(
    self, env, id,
    [id](persistence::backend& b) -> result<model::customer> {
      pqxx::read_transaction tx{b.pg.connection()};
      return cs::find_customer(tx, id).value_or(model::customer{});
    },
    [self, env](model::customer c) {
      if (!c.id.empty())
        self->state.customer = std::move(c);
      else
        self->send(self, absent_atom_v);
    });
  return {
    [self](const std::string&, read_atom,
           const model::principal& who) -> caf::result<model::customer> {
      if (!self->state.customer || !may_see(who, self->state.id))
        return absent("customer", self->state.id);
      return *self->state.customer;
    },
    [self, env](const std::string&, place_atom,
                model::order_request& req) -> caf::result<model::order_outcome> {
      if (!self->state.customer)
        return absent("customer", self->state.id);
      req.customer_id = self->state.id;
      auto rp = self->make_response_promise<model::order_outcome>();
      if (!req.idempotency_key) {
        place_new(self, env, std::move(req), rp);
        return rp;
      }
      // One order at a time per customer (awaited), so two requests with one key on this node
      // never both pass the check; across nodes the key's primary key decides.
      cs::idempotency_ref idem{self->state.id, *req.idempotency_key, req.request_hash};
      db_await<model::order_outcome>(
        self, env, self->state.id,
        [idem](persistence::backend& b) -> result<model::order_outcome> {
          pqxx::read_transaction tx{b.pg.connection()};
          return replay_of(cs::find_idempotent(tx, idem.customer_id, idem.key), idem);
        },
        [self, env, req, rp](model::order_outcome& o) mutable {
          if (o.replayed)
            rp.deliver(std::move(o));
          else
            place_new(self, env, std::move(req), rp);
        },
        [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
      return rp;
    },
    [self](const std::string&, points_atom, std::int64_t points, std::int64_t version) {
      auto& c = self->state.customer;
      if (c && version > c->version) {
        c->loyalty_points = points;
        c->version = version;
      }
    },
    [self, env](absent_atom) {
      if (!self->state.customer)
        report_absent(env.manager, self->state.id, self->address());
    },
    [self](passivate_atom) { self->quit(); },
  };
}

// -- cart -------------------------------------------------------------------------------------

namespace {

using cart_ptr = cart_actor::stateful_pointer<cart_state>;

using priced_fn = std::function<void(caf::expected<model::cart_view>)>;

/// Prices `c` at the products' current prices (asking them all at once), then calls `done`
/// with the view, or with the error that prevented it (a product that could not be read, a
/// country no zone serves). Shipping that cannot be quoted for these items is no error: the
/// view says why in shipping_problem. `serialise`: the cart handles nothing else meanwhile
/// (for a change, which must see the outcome of the one before); a view needs not wait.
void price_then(cart_ptr self, const commerce_env& env, model::cart c, std::string country,
                bool serialise, priced_fn done) {
  struct pricing {
    model::cart_view view;
    std::vector<std::optional<model::order_line>> lines;
    std::size_t pending = 0;
    caf::error failed;
  };
  auto acc = std::make_shared<pricing>();
  acc->view.basket = std::move(c);
  acc->lines.resize(acc->view.basket.items.size());
  acc->pending = acc->lines.size();
  auto complete = [acc, env, country, done]() {
    if (acc->failed) {
      done(acc->failed);
      return;
    }
    auto& v = acc->view;
    std::int64_t weight = 0;
    for (auto& l : acc->lines)
      if (l) { // a product that no longer exists drops out of the cart's view
        v.subtotal_cents += l->unit_price_cents * l->quantity;
        weight += l->weight_grams * l->quantity;
        v.lines.push_back(std::move(*l));
      }
    if (v.lines.empty()) {
      v.currency = "USD";
      done(std::move(v));
      return;
    }
    if (!commerce::ships_to(env.settings->shipping, country)) {
      done(make_domain_error(errc::unprocessable, "no shipping zone serves " + country,
                             {{"country", "no shipping zone serves " + country}}));
      return;
    }
    auto quote = commerce::shipping_quote(env.settings->shipping, country, v.currency,
                                          v.subtotal_cents, weight);
    if (quote) {
      v.shipping_cents = *quote;
      v.total_cents = v.subtotal_cents + v.shipping_cents;
    } else {
      v.shipping_problem = quote.error().detail;
    }
    done(std::move(v));
  };
  if (acc->pending == 0) {
    complete();
    return;
  }
  for (std::size_t i = 0; i < acc->lines.size(); ++i) {
    const auto item = acc->view.basket.items[i];
    auto on_product = [acc, i, item, complete](model::product& p) {
      if (acc->view.currency.empty())
        acc->view.currency = p.currency;
      acc->lines[i] = model::order_line{p.id, p.name, p.price_cents, item.quantity, p.weight_grams};
      if (--acc->pending == 0)
        complete();
    };
    auto on_error = [acc, complete](caf::error& e) {
      if (to_failure(e).code != errc::not_found)
        acc->failed = e;
      if (--acc->pending == 0)
        complete();
    };
    auto asked = self->request(env.dir->manager_for(entity_kind::product, item.product_id),
                               env.call_timeout, item.product_id, read_atom_v);
    if (serialise)
      asked.await(on_product, on_error);
    else
      asked.then(on_product, on_error);
  }
}

/// Prices `c` and delivers the view (or the error) to `rp`.
void price_cart(cart_ptr self, const commerce_env& env, model::cart c, std::string country,
                caf::typed_response_promise<model::cart_view> rp) {
  price_then(self, env, std::move(c), std::move(country), false,
             [rp](caf::expected<model::cart_view> v) mutable {
               if (v)
                 rp.deliver(std::move(*v));
               else
                 rp.deliver(std::move(v.error()));
             });
}

/// `c` with the product at `quantity` (replaced, or added last).
model::cart with_item(model::cart c, const std::string& product_id, std::int64_t quantity) {
  auto it = std::find_if(c.items.begin(), c.items.end(),
                         [&](const model::cart_item& i) { return i.product_id == product_id; });
  if (it != c.items.end())
    it->quantity = quantity;
  else
    c.items.push_back({product_id, quantity});
  return c;
}

result<model::cart> save_items(persistence::backend& b, const model::cart& c, int ttl_s) {
  pqxx::work tx{b.pg.connection()};
  auto saved = cs::save_cart_items(tx, c, c.version, ttl_s);
  if (!saved)
    return failure{errc::conflict, "the cart changed or was checked out; reload it", {}};
  tx.commit();
  return std::move(*saved);
}

/// The job that reads cart `id` as PostgreSQL has it (an empty cart when there is none).
auto read_cart(std::string id) {
  return [id = std::move(id)](persistence::backend& b) -> result<model::cart> {
    pqxx::read_transaction tx{b.pg.connection()};
    return cs::find_cart(tx, id).value_or(model::cart{});
  };
}

/// Keeps what read_cart found: the cart, or none.
void keep_cart(cart_ptr self, model::cart c) {
  if (c.id.empty())
    self->state.cart.reset();
  else
    self->state.cart = std::move(c);
}

} // namespace

cart_actor::behavior_type cart_entity(cart_ptr self, commerce_env env, std::string id) {
  self->state.id = id;
  load_then<model::cart>(self, env, id, read_cart(id), [self, env](model::cart c) {
    keep_cart(self, std::move(c));
    if (!self->state.cart)
      self->send(self, absent_atom_v);
  });
  // An expired cart is gone, also for an actor that kept it in memory.
  auto live = [self]() -> model::cart* {
    auto& c = self->state.cart;
    if (c && c->expires_at_ms <= now_ms())
      c.reset();
    return c ? &*c : nullptr;
  };
  return {
    [self, env, live](const std::string&, view_atom, const model::principal& who,
                      std::string& country) -> caf::result<model::cart_view> {
      auto* c = live();
      if (!c || !may_see(who, c->customer_id))
        return absent("cart", self->state.id);
      auto rp = self->make_response_promise<model::cart_view>();
      price_cart(self, env, *c, std::move(country), rp);
      return rp;
    },
    [self, env, live](const std::string&, set_item_atom, const model::principal& who,
                      std::string& product_id, std::int64_t quantity,
                      std::string& country) -> caf::result<model::cart_view> {
      auto* c = live();
      if (!c || !may_see(who, c->customer_id))
        return absent("cart", self->state.id);
      if (c->order_id)
        return make_domain_error(errc::conflict, "the cart was checked out as " + *c->order_id);
      std::int64_t before = 0;
      bool present = false;
      for (const auto& i : c->items)
        if (i.product_id == product_id) {
          before = i.quantity;
          present = true;
        }
      // A cart is an order in the making: it may not grow past what checkout accepts (fewer
      // is always fine, so a cart over a lowered limit can be brought back under it).
      const auto max_lines = env.settings->orders.max_lines;
      if (!present && quantity > 0 && c->items.size() >= static_cast<std::size_t>(max_lines))
        return make_domain_error(
          errc::unprocessable, "a cart holds at most " + std::to_string(max_lines) + " products",
          {{"product_id", "the cart already holds " + std::to_string(c->items.size())
                            + " products, the most one order may have"}});
      auto rp = self->make_response_promise<model::cart_view>();
      auto ttl = env.settings->carts.ttl_s;
      const bool grows = quantity > before;
      // Prices the new items first: a change that the shop could not ship (a parcel heavier
      // than the zone's largest bracket) is refused and nothing is saved. Less of something is
      // always accepted, so a cart that became unshippable (weights or rates changed) can be
      // brought back. Then writes the items and answers the priced cart.
      auto save = [self, env, ttl, country, grows, rp](model::cart next) mutable {
        price_then(
          self, env, next, country, true,
          [self, env, ttl, grows, next, rp](caf::expected<model::cart_view> v) mutable {
            if (!v) {
              rp.deliver(std::move(v.error()));
              return;
            }
            if (grows && !v->shipping_problem.empty()) {
              rp.deliver(make_domain_error(errc::unprocessable, v->shipping_problem,
                                           {{"quantity", v->shipping_problem}}));
              return;
            }
            db_await<model::cart>(
              self, env, self->state.id,
              [next, ttl](persistence::backend& b) { return save_items(b, next, ttl); },
              [self, view = std::move(*v), rp](model::cart& saved) mutable {
                self->state.cart = saved;
                view.basket = std::move(saved);
                rp.deliver(std::move(view));
              },
              [self, env, rp](caf::error& e) mutable {
                if (to_failure(e).code != errc::conflict) {
                  rp.deliver(std::move(e));
                  return;
                }
                // This actor's copy is stale (a checkout whose answer was lost, a change
                // through another node): read the cart again before anything else, then
                // answer the conflict; the client's retry sees the cart as it is.
                db_await<model::cart>(
                  self, env, self->state.id, read_cart(self->state.id),
                  [self, e, rp](model::cart& fresh) mutable {
                    keep_cart(self, std::move(fresh));
                    rp.deliver(std::move(e));
                  },
                  [e, rp](caf::error&) mutable { rp.deliver(std::move(e)); });
              });
          });
      };
      auto next = *c;
      auto it = std::find_if(next.items.begin(), next.items.end(),
                             [&](const model::cart_item& i) { return i.product_id == product_id; });
      if (quantity == 0) {
        if (it == next.items.end()) {
          price_cart(self, env, *c, country, rp); // nothing to remove
          return rp;
        }
        next.items.erase(it);
        save(std::move(next));
        return rp;
      }
      // The product must exist (404) and be priced in the cart's currency.
      self
        ->request(env.dir->manager_for(entity_kind::product, product_id), env.call_timeout,
                  product_id, read_atom_v)
        .await(
          [self, env, save, next, product_id, quantity, rp](model::product& p) mutable {
            // A cart holds one currency: that of its other items (they all share it).
            auto other = std::find_if(next.items.begin(), next.items.end(), [&](const auto& i) {
              return i.product_id != product_id;
            });
            if (other != next.items.end()) {
              auto other_id = other->product_id;
              self
                ->request(env.dir->manager_for(entity_kind::product, other_id), env.call_timeout,
                          other_id, read_atom_v)
                .await(
                  [save, next, currency = p.currency, product_id, quantity,
                   rp](model::product& q) mutable {
                    if (q.currency != currency) {
                      rp.deliver(make_domain_error(
                        errc::invalid_input, "the cart is in " + q.currency,
                        {{"product_id",
                          product_id + " is priced in " + currency + "; a cart holds one currency"}}));
                      return;
                    }
                    save(with_item(std::move(next), product_id, quantity));
                  },
                  [save, next, product_id, quantity, rp](caf::error& e) mutable {
                    if (to_failure(e).code != errc::not_found) {
                      rp.deliver(std::move(e));
                      return;
                    }
                    // That product is gone (it drops out of the cart's view): no currency to keep.
                    save(with_item(std::move(next), product_id, quantity));
                  });
              return;
            }
            save(with_item(std::move(next), product_id, quantity));
          },
          [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
      return rp;
    },
    [self, env, live](const std::string&, checkout_atom, const model::principal& who,
                      model::order_request& req) -> caf::result<model::order_outcome> {
      auto* c = live();
      if (!c || !may_see(who, c->customer_id))
        return absent("cart", self->state.id);
      if (c->order_id && !req.idempotency_key)
        return make_domain_error(errc::conflict, "the cart was checked out as " + *c->order_id);
      if (!c->order_id && c->items.empty())
        return make_domain_error(errc::conflict, "the cart is empty");
      // The limits of POST /orders, for items the cart may have taken in under looser ones:
      // each line is one step of the placement saga within the request's deadline.
      if (!c->order_id) {
        const auto& limits = env.settings->orders;
        if (c->items.size() > static_cast<std::size_t>(limits.max_lines))
          return make_domain_error(
            errc::unprocessable,
            "an order has at most " + std::to_string(limits.max_lines) + " lines",
            {{"items", "the cart holds " + std::to_string(c->items.size())
                         + " products; remove some before checking out"}});
        std::vector<field_error> too_many;
        for (std::size_t i = 0; i < c->items.size(); ++i)
          if (c->items[i].quantity > limits.max_units_per_line)
            too_many.push_back({"items[" + std::to_string(i) + "].quantity",
                                "at most " + std::to_string(limits.max_units_per_line)
                                  + " of one product per order"});
        if (!too_many.empty())
          return make_domain_error(errc::unprocessable, "the cart exceeds an order's limits",
                                   std::move(too_many));
      }
      req.customer_id = c->customer_id;
      req.cart_id = c->id;
      req.items.clear();
      for (const auto& i : c->items)
        req.items.push_back({i.product_id, i.quantity});
      auto rp = self->make_response_promise<model::order_outcome>();
      self
        ->request(env.dir->manager_for(entity_kind::customer, c->customer_id), env.call_timeout,
                  c->customer_id, place_atom_v, req)
        .await(
          [self, rp](model::order_outcome& o) mutable {
            if (self->state.cart)
              self->state.cart->order_id = o.placed.id;
            rp.deliver(std::move(o));
          },
          [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
      return rp;
    },
    [self, env](absent_atom) {
      if (!self->state.cart)
        report_absent(env.manager, self->state.id, self->address());
    },
    [self](passivate_atom) { self->quit(); },
  };
}

// -- order ------------------------------------------------------------------------------------

namespace {

using order_ptr = order_actor::stateful_pointer<order_state>;

/// The state of one placement: which lines are held, which products fell short.
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

void release_all(order_ptr self, const commerce_env& env, const saga& s) {
  for (const auto& l : s.held)
    caf::anon_send(env.dir->manager_for(entity_kind::product, l.product_id), l.product_id,
                   release_atom_v, self->state.id);
}

void fail(order_ptr self, const commerce_env& env, const std::shared_ptr<saga>& s, caf::error e) {
  release_all(self, env, *s);
  s->rp.deliver(std::move(e));
  self->quit(); // the order never existed: nothing to keep active
}

/// Tells the products `ids` their stock as PostgreSQL has it now, then calls `done`. Runs on the
/// order's worker, so it reads after any job of this order that was still queued or running
/// there (one whose answer timed out). A second attempt covers a read that expired while queued
/// behind that job: once the worker took it, that job was over.
template <class Done>
void refresh_stock(order_ptr self, const commerce_env& env, std::vector<std::string> ids,
                   Done done, int attempts = 2) {
  db_await<model::order_change>(
    self, env, self->state.id,
    [ids](persistence::backend& b) -> result<model::order_change> {
      pqxx::read_transaction tx{b.pg.connection()};
      model::order_change ch;
      ch.stock = levels(cs::stock_levels(tx, ids));
      return ch;
    },
    [self, env, done](model::order_change& ch) mutable {
      publish_stock(self, env, self->state.id, ch.stock);
      done();
    },
    [self, env, ids, done, attempts](caf::error&) mutable {
      if (attempts > 1)
        return refresh_stock(self, env, std::move(ids), std::move(done), attempts - 1);
      done();
    });
}

/// All lines are held: price the order and commit it in one transaction.
void commit_placement(order_ptr self, const commerce_env& env, std::shared_ptr<saga> s) {
  model::order o;
  o.id = self->state.id;
  o.customer_id = s->req.customer_id;
  o.status = st::pending_payment;
  o.lines = s->held;
  o.shipping_address = s->req.shipping_address;
  o.currency = s->currency;
  // Prices and names were copied from the products at hold time; later changes do not move them.
  o.payment_due_at_ms = now_ms() + std::int64_t{env.settings->orders.payment_timeout_s} * 1000;
  if (auto priced = commerce::price_order(o, env.settings->shipping); !priced)
    return fail(self, env, s, make_domain_error(priced.error().code, priced.error().detail));
  std::optional<cs::idempotency_ref> idem;
  if (s->req.idempotency_key)
    idem = cs::idempotency_ref{o.customer_id, *s->req.idempotency_key, s->req.request_hash};
  auto cart_id = s->req.cart_id;
  auto max_unpaid = env.settings->orders.max_open_unpaid_per_customer;
  db_await<model::order_change>(
    self, env, o.id,
    [o, idem, cart_id, max_unpaid](persistence::backend& b) -> result<model::order_change> {
      pqxx::work tx{b.pg.connection()};
      auto placed = cs::place_order(tx, o, idem, cart_id, max_unpaid);
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
      forget_cached_products(b, placed.changes);
      model::order_change ch;
      ch.placed = std::move(placed.stored);
      ch.stock = levels(placed.changes);
      return ch;
    },
    [self, env, s](model::order_change& ch) {
      self->state.order = ch.placed;
      publish_stock(self, env, self->state.id, ch.stock);
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
void hold_next(order_ptr self, const commerce_env& env, std::shared_ptr<saga> s) {
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
      return fail(self, env, s,
                  make_domain_error(errc::out_of_stock, "insufficient stock for " + ids,
                                    s->short_lines));
    }
    return commit_placement(self, env, s);
  }
  auto index = s->next++;
  const auto line = s->lines[index];
  self
    ->request(env.dir->manager_for(entity_kind::product, line.product_id), env.call_timeout,
              line.product_id, reserve_atom_v, self->state.id, line.quantity)
    .await(
      [self, env, s, line](model::reservation& r) {
        if (s->currency.empty())
          s->currency = r.currency;
        else if (s->currency != r.currency)
          s->mixed_currencies = true;
        s->held.push_back(
          model::order_line{line.product_id, r.name, r.unit_price_cents, line.quantity,
                            r.weight_grams});
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

/// Applies a committed change to the order actor's state and tells products and customer.
void apply_change(order_ptr self, const commerce_env& env, const model::order_change& ch) {
  self->state.order = ch.placed;
  publish_stock(self, env, self->state.id, ch.stock);
  publish_points(self, env, ch);
}

/// The job that reads the order and the stock of its products as PostgreSQL has them.
auto reread_job(std::string id) {
  return [id = std::move(id)](persistence::backend& b) -> result<model::order_change> {
    pqxx::read_transaction tx{b.pg.connection()};
    model::order_change ch;
    if (auto o = cs::find_order(tx, id)) {
      std::vector<std::string> ids;
      for (const auto& l : o->lines)
        ids.push_back(l.product_id);
      ch.stock = levels(cs::stock_levels(tx, ids));
      ch.placed = std::move(*o);
    }
    return ch;
  };
}

/// After a change whose outcome is unknown (a lost answer) or that lost to another writer: the
/// order and the stock of its products as they are now, before anything else (a second attempt
/// as in refresh_stock; then the actor stops and the next message re-activates it).
void reread(order_ptr self, const commerce_env& env, int attempts = 2) {
  db_await<model::order_change>(
    self, env, self->state.id, reread_job(self->state.id),
    [self, env](model::order_change& ch) {
      if (!ch.placed.id.empty())
        self->state.order = ch.placed;
      publish_stock(self, env, self->state.id, ch.stock);
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
void change_into(order_ptr self, const commerce_env& env, Job job,
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
caf::typed_response_promise<model::order> change(order_ptr self, const commerce_env& env, Job job) {
  auto rp = self->make_response_promise<model::order>();
  change_into(self, env, std::move(job), rp);
  return rp;
}

/// The job of a cancellation from status `from` (stock back, payment marked refunded and
/// points back if paid; the provider's refund follows on a payment worker).
auto cancel_job(model::order o, std::string from) {
  return [o = std::move(o), from = std::move(from)](persistence::backend& b) -> result<model::order_change> {
    pqxx::work tx{b.pg.connection()};
    auto done = cs::cancel_order(tx, o, from);
    if (!done)
      return failure{errc::conflict, "the order changed meanwhile; retry", {}};
    auto fresh = cs::find_order(tx, o.id);
    tx.commit();
    forget_cached_products(b, done->changes);
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
  return [o = std::move(o), to = std::move(to)](persistence::backend& b) -> result<model::order_change> {
    pqxx::work tx{b.pg.connection()};
    if (!cs::transition(tx, o.id, o.status, to))
      return failure{errc::conflict, "the order changed meanwhile; retry", {}};
    auto fresh = cs::find_order(tx, o.id);
    tx.commit();
    model::order_change ch;
    ch.placed = std::move(*fresh);
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

/// Runs the provider call `fn` on a payment worker and continues with `ok` or `err` on the
/// order actor, which handles other messages meanwhile. Jobs of one order go to one payment
/// worker, in the order they were sent: a reconciliation's look-up runs after a charge of the
/// same order that was still queued or running there.
template <class T, class Fn, class OnOk, class OnErr>
void call_provider(order_ptr self, const commerce_env& env, caf::timespan deadline, Fn fn,
                   OnOk ok, OnErr err) {
  self
    ->request(env.payment_workers->for_key(self->state.id), deadline,
              make_job(std::move(fn), deadline))
    .then([ok](T& x) mutable { ok(x); }, [err](caf::error& e) mutable { err(e); });
}

/// How long the order actor waits for one provider job; a reconciliation waits for twice that
/// (the sweeper's threshold), so it never takes over a live payment that may still capture.
caf::timespan provider_deadline(const commerce_env& env) {
  return env.call_timeout / 2;
}

/// The charge: the provider, retried with backoff while it fails transiently and the deadline
/// allows another attempt (on the payment worker: nobody else waits for these sleeps). Answers
/// the charge reference.
auto charge_job(const commerce_env& env, const model::order& o, std::string method) {
  auto until = std::chrono::steady_clock::now() + provider_deadline(env);
  return [payments = env.payments, id = o.id, amount = o.total_cents, currency = o.currency,
          method = std::move(method), until](persistence::backend&) -> result<std::string> {
    auto reference = charge_reference(id);
    constexpr int attempts = 3;
    for (int attempt = 1;; ++attempt) {
      auto charged = payments->charge(method, amount, currency, reference);
      if (charged.outcome == charge_result::kind::declined)
        return failure{errc::payment_declined, charged.message, {}};
      if (charged.outcome == charge_result::kind::captured) {
        if (injected_faults().pause_after_charge)
          std::this_thread::sleep_for(std::chrono::seconds(60));
        return charged.reference;
      }
      // Full jitter, up to 80, 160 ms; no attempt is started that could end past the deadline.
      if (attempt == attempts
          || std::chrono::steady_clock::now() + std::chrono::milliseconds(160) >= until)
        return failure{errc::upstream_failed,
                       "the payment provider failed " + std::to_string(attempt)
                         + " times; nothing was charged, retry later",
                       {}};
      persistence::backoff_sleep(attempt + 2);
    }
  };
}

/// Whether the provider charged this order: "captured", "refunded" or "none".
auto find_charge_job(const commerce_env& env, std::string id) {
  return [payments = env.payments, id = std::move(id)](persistence::backend&) -> result<std::string> {
    switch (payments->find(charge_reference(id))) {
      case charge_state::captured:
        return std::string{"captured"};
      case charge_state::refunded:
        return std::string{"refunded"};
      case charge_state::none:
        break;
    }
    return std::string{"none"};
  };
}

/// Refunds the charge `reference` at the provider (idempotent there), on a payment worker.
void refund_charge(order_ptr self, const commerce_env& env, std::string reference) {
  auto order_id = self->state.id;
  call_provider<bool>(
    self, env, provider_deadline(env),
    [payments = env.payments, reference](persistence::backend&) -> result<bool> {
      return payments->refund(reference);
    },
    [order_id, reference](bool ok) {
      if (!ok)
        spdlog::error("the provider refused the refund of {} (order {})", reference, order_id);
    },
    [order_id, reference](caf::error& e) {
      spdlog::error("refund of {} (order {}) failed: {}", reference, order_id,
                    to_failure(e).detail);
    });
}

/// The intent: pending_payment → paying, with the charge reference.
auto begin_payment_job(std::string id) {
  return [id = std::move(id)](persistence::backend& b) -> result<model::order> {
    pqxx::work tx{b.pg.connection()};
    if (!cs::begin_payment(tx, id, charge_reference(id)))
      return failure{errc::conflict, "the order is no longer awaiting payment", {}};
    auto fresh = cs::find_order(tx, id);
    tx.commit();
    return std::move(*fresh);
  };
}

/// Nothing was charged: paying → pending_payment (a no-op when it is not paying any more).
auto abandon_payment_job(std::string id) {
  return [id = std::move(id)](persistence::backend& b) -> result<model::order> {
    pqxx::work tx{b.pg.connection()};
    cs::abandon_payment(tx, id);
    auto fresh = cs::find_order(tx, id);
    tx.commit();
    return std::move(*fresh);
  };
}

/// The outcome: the charge `reference` becomes the order's payment (paid, loyalty points), if
/// the order still awaits payment; else the order as it is. `live`: the record step of a
/// payment that was just charged (the test fault fail_record_after_charge applies to it only).
auto record_charge_job(model::order o, std::string provider, std::string reference, bool live) {
  return [o = std::move(o), provider = std::move(provider), reference = std::move(reference),
          live](persistence::backend& b) -> result<model::order_change> {
    if (live && injected_faults().fail_record_after_charge)
      return failure{errc::unavailable, "the payment could not be recorded (injected fault)", {}};
    auto points = commerce::loyalty_points(o.subtotal_cents);
    pqxx::work tx{b.pg.connection()};
    auto paid =
      cs::record_payment(tx, o, model::payment_info{"captured", provider, reference}, points);
    model::order_change ch;
    ch.placed = std::move(*cs::find_order(tx, o.id));
    tx.commit();
    if (paid) {
      ch.customer_points = paid->customer_points;
      ch.customer_version = paid->customer_version;
    }
    return ch;
  };
}

using settled_fn = std::function<void(caf::expected<model::order>)>;

/// Records the captured charge `reference` and calls `done` with the paid order. Recording
/// twice (a retried job, a reconciliation after a live payment) finds the order paid with this
/// very reference and changes nothing. If the order cannot take the charge any more (it was
/// cancelled meanwhile), that charge, and only that one, is refunded.
void record_charge(order_ptr self, const commerce_env& env, std::string reference, bool live,
                   settled_fn done) {
  auto o = *self->state.order;
  db_await<model::order_change>(
    self, env, o.id, record_charge_job(o, env.payments->name(), reference, live),
    [self, env, reference, done](model::order_change& ch) {
      const auto& now = ch.placed;
      bool ours = now.payment && now.payment->reference == reference;
      if (ours && now.status != st::cancelled) {
        apply_change(self, env, ch);
        return done(now);
      }
      self->state.order = now;
      if (!ours) // a cancelled order's own payment was refunded by its cancellation
        refund_charge(self, env, reference);
      done(make_domain_error(errc::conflict, "the order is no longer awaiting payment; the "
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
void reconcile(order_ptr self, const commerce_env& env, OnPaid on_paid, Otherwise otherwise,
               OnError on_error) {
  self->state.settling = true;
  call_provider<std::string>(
    self, env, provider_deadline(env), find_charge_job(env, self->state.id),
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
caf::typed_response_promise<model::order> pay(order_ptr self, const commerce_env& env,
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
  db_await<model::order>(
    self, env, self->state.id, begin_payment_job(self->state.id),
    [self, env, method, finish](model::order& o) mutable {
      self->state.order = o;
      call_provider<std::string>(
        self, env, provider_deadline(env), charge_job(env, o, method),
        [self, env, finish](std::string& reference) {
          record_charge(self, env, reference, true, finish);
        },
        [self, env, finish](caf::error& e) mutable {
          if (!nothing_charged(to_failure(e))) {
            // The charge may have happened: reconciliation finds out.
            return finish(make_domain_error(errc::timeout, "the payment's outcome is not known "
                                                           "yet; the order shows it shortly"));
          }
          db_await<model::order>(
            self, env, self->state.id, abandon_payment_job(self->state.id),
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

order_actor::behavior_type order_entity(order_ptr self, commerce_env env, std::string id) {
  self->state.id = id;
  load_then<model::order>(
    self, env, id,
    [id](persistence::backend& b) -> result<model::order> {
      pqxx::read_transaction tx{b.pg.connection()};
      return cs::find_order(tx, id).value_or(model::order{});
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
    [self, env](const std::string&, create_atom,
                model::order_request& req) -> caf::result<model::order> {
      if (self->state.order)
        return make_domain_error(errc::conflict, "order " + self->state.id + " exists");
      auto s = std::make_shared<saga>();
      s->lines = commerce::normalise_lines(req.items);
      // The callers checked these; the saga must not start a run it cannot finish in time.
      const auto& limits = env.settings->orders;
      if (s->lines.size() > static_cast<std::size_t>(limits.max_lines))
        return make_domain_error(errc::unprocessable, "an order has at most "
                                                        + std::to_string(limits.max_lines)
                                                        + " lines");
      for (const auto& l : s->lines)
        if (l.quantity > limits.max_units_per_line)
          return make_domain_error(errc::unprocessable,
                                   "at most " + std::to_string(limits.max_units_per_line)
                                     + " of one product per order");
      s->req = std::move(req);
      s->rp = self->make_response_promise<model::order>();
      hold_next(self, env, s);
      return s->rp;
    },
    [self, current](const std::string&, read_atom,
                    const model::principal& who) -> caf::result<model::order> {
      auto* o = current(who);
      if (!o)
        return absent("order", self->state.id);
      return *o;
    },
    [self, env, current](const std::string&, pay_atom, const model::principal& who,
                         std::string& method) -> caf::result<model::order> {
      auto* o = current(who);
      if (!o)
        return absent("order", self->state.id);
      if (self->state.settling)
        return make_domain_error(errc::conflict, "a payment of this order is in progress");
      if (auto next = commerce::next_status(o->status, commerce::order_action::pay); !next)
        return make_domain_error(errc::conflict, next.error().detail);
      return pay(self, env, std::move(method));
    },
    [self, current, cancel, settle_then_cancel](
      const std::string&, cancel_atom, const model::principal& who) -> caf::result<model::order> {
      auto* o = current(who);
      if (!o)
        return absent("order", self->state.id);
      if (self->state.settling)
        return make_domain_error(errc::conflict, "a payment of this order is in progress");
      auto action = who.admin ? commerce::order_action::cancel_admin
                              : commerce::order_action::cancel_owner;
      if (auto next = commerce::next_status(o->status, action); !next)
        return make_domain_error(errc::conflict, next.error().detail);
      auto rp = self->make_response_promise<model::order>();
      if (o->status == st::pending_payment && attempted(*o))
        settle_then_cancel(rp);
      else
        cancel(*o, rp);
      return rp;
    },
    [self, env, current](const std::string&, ship_atom,
                         const model::principal& who) -> caf::result<model::order> {
      auto* o = current(who);
      if (!o)
        return absent("order", self->state.id);
      if (!who.admin)
        return make_domain_error(errc::forbidden, "only an admin ships orders");
      auto next = commerce::next_status(o->status, commerce::order_action::ship);
      if (!next)
        return make_domain_error(errc::conflict, next.error().detail);
      return change(self, env, transition_job(*o, *next));
    },
    [self, env, current](const std::string&, deliver_atom,
                         const model::principal& who) -> caf::result<model::order> {
      auto* o = current(who);
      if (!o)
        return absent("order", self->state.id);
      if (!who.admin)
        return make_domain_error(errc::forbidden, "only an admin marks orders delivered");
      auto next = commerce::next_status(o->status, commerce::order_action::deliver);
      if (!next)
        return make_domain_error(errc::conflict, next.error().detail);
      return change(self, env, transition_job(*o, *next));
    },
    // The sweeper's nudge: an unpaid order past its time is cancelled, a payment left paying is
    // reconciled. Either may come twice (two sweeps, two nodes): each step is conditional.
    [self, env, cancel, settle_then_cancel](const std::string&, expire_atom) {
      auto& o = self->state.order;
      if (!o || self->state.settling)
        return;
      if (o->status == st::paying) {
        reconcile(
          self, env, [](caf::expected<model::order>) {},
          [self, env] {
            db_await<model::order>(
              self, env, self->state.id, abandon_payment_job(self->state.id),
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
    [self, env](absent_atom) {
      if (!self->state.order)
        report_absent(env.manager, self->state.id, self->address());
    },
    [self](passivate_atom) { self->quit(); },
  };
}

// -- payment timeouts and reconciliation --------------------------------------------------------

caf::behavior payment_sweeper(caf::event_based_actor* self, commerce_env env) {
  // Paying for longer than a live payment can wait for the provider: its outcome was lost.
  auto stale_after = 2 * provider_deadline(env);
  caf::timespan shortest = std::chrono::milliseconds(200);
  auto period = std::clamp<caf::timespan>(
    std::chrono::seconds(env.settings->orders.payment_timeout_s) / 4, shortest,
    std::max(shortest, std::min<caf::timespan>(std::chrono::seconds(10), stale_after)));
  self->send(self, sweep_atom_v);
  return {
    [self, env, period, stale_after](sweep_atom) {
      auto stale_ms = std::chrono::duration_cast<std::chrono::milliseconds>(stale_after).count();
      self
        ->request(env.pool->any(), env.db_timeout,
                  make_job(
                    [stale_ms](persistence::backend& b) -> result<std::vector<std::string>> {
                      pqxx::read_transaction tx{b.pg.connection()};
                      auto ids = cs::stale_payments(tx, 500, stale_ms);
                      auto overdue = cs::overdue_orders(tx, 500);
                      ids.insert(ids.end(), overdue.begin(), overdue.end());
                      return ids;
                    },
                    env.db_timeout))
        .then(
          [self, env, period](std::vector<std::string>& ids) {
            // Anonymous: the order answers an expiry like any change (with the order), and
            // that answer must not come back here, where nothing handles it (it used to end in
            // "unexpected message" and stop the order actor after every timeout).
            for (const auto& id : ids)
              caf::anon_send(env.dir->manager_for(entity_kind::order, id), id, expire_atom_v);
            self->delayed_send(self, period, sweep_atom_v);
          },
          [self, period](caf::error&) { self->delayed_send(self, period, sweep_atom_v); });
    },
  };
}

} // namespace emporium::actors
