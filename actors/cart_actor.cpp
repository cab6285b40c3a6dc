#include "actors/cart_actor.hpp"

#include "actors/order_logic.hpp"
#include "actors/product_snapshot.hpp"
#include "persistence/cart_store.hpp"

#include <algorithm>

namespace emporium::actors {

namespace carts = persistence::cart_store;

namespace {

using cart_ptr = cart_entity_actor::stateful_pointer<cart_state>;

using priced_fn = std::function<void(caf::expected<model::cart_view>)>;

/// Reads product `id` for the cart and hands it to `ok` (or the failure to `err`): from the
/// node's snapshot when one is current here (the rule of runtime::current_product: the node
/// serves the key now), with no message at all and before this returns; otherwise by asking
/// the product's actor, its answer awaited when `serialise` (nothing else reaches the cart
/// meanwhile). A snapshot withheld after an order's commit is not current: that read goes to
/// the actor, behind the order's stock message, as an HTTP read would.
template <class Ok, class Err>
void read_product(cart_ptr self, const entity_env& env, const std::string& id, bool serialise,
                  Ok ok, Err err) {
  if (env.snapshots && !env.dir->elsewhere(id))
    if (auto snap = env.snapshots->find(id)) {
      auto p = snap->product;
      ok(p);
      return;
    }
  auto asked = request_within(self, env.deadlines, env.dir->products(id), env.call_timeout,
                              product_read{id});
  if (serialise)
    asked.await(std::move(ok), std::move(err));
  else
    asked.then(std::move(ok), std::move(err));
}

/// Prices `c` at the products' current prices (asking them all at once), then calls `done`
/// with the view, or with the error that prevented it (a product that could not be read, a
/// country no zone serves). Shipping that cannot be quoted for these items is no error: the
/// view says why in shipping_problem. `serialise`: the cart handles nothing else meanwhile
/// (for a change, which must see the outcome of the one before); a view needs not wait.
void price_then(cart_ptr self, const entity_env& env, model::cart c, std::string country,
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
    if (!order_logic::ships_to(env.settings->shipping, country)) {
      done(make_domain_error(errc::unprocessable, "no shipping zone serves " + country,
                             {{"country", "no shipping zone serves " + country}}));
      return;
    }
    auto quote = order_logic::shipping_quote(env.settings->shipping, country, v.currency,
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
    read_product(self, env, item.product_id, serialise, on_product, on_error);
  }
}

/// Prices `c` and delivers the view (or the error) to `rp`.
void price_cart(cart_ptr self, const entity_env& env, model::cart c, std::string country,
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

/// A cart to create, and one to save: the inputs of the cart jobs a worker batches. The carts
/// of one node share one carts.ttl_s, so a batch takes its first one's.
struct cart_insert {
  carts::new_cart cart;
  int ttl_s = 0;
};
struct cart_write {
  model::cart cart; ///< the items to write, at the version it expects to find
  int ttl_s = 0;
};

/// The `member` of each input, for a cart statement.
template <class In, class T>
std::vector<const T*> each(const std::vector<const In*>& in, T In::*member) {
  std::vector<const T*> out;
  for (const auto* i : in)
    out.push_back(&(i->*member));
  return out;
}

/// Creates carts; a batch of a database worker (make_batch_job). Statements committed by
/// themselves (no BEGIN and COMMIT round trips), safe to run again: a cart created twice is
/// answered as the first run made it. An id another customer's cart has (random ids: never
/// seen) is no cart of this customer's.
std::vector<result<model::cart>> create_carts(persistence::backend& b,
                                              const std::vector<const cart_insert*>& in) {
  pqxx::nontransaction tx{b.pg.connection()};
  return answers_or(carts::insert_carts(tx, each(in, &cart_insert::cart), in.front()->ttl_s),
                    failure{errc::internal, "the new cart's id is taken", {}});
}

/// Saves carts' items; a batch of a database worker (make_batch_job). Statements committed by
/// themselves, safe to run again when the connection was lost before their answer
/// (cart_store::save_carts_items).
std::vector<result<model::cart>> save_carts(persistence::backend& b,
                                            const std::vector<const cart_write*>& in) {
  pqxx::nontransaction tx{b.pg.connection()};
  return answers_or(carts::save_carts_items(tx, each(in, &cart_write::cart), in.front()->ttl_s),
                    failure{errc::conflict, "the cart changed or was checked out; reload it", {}});
}

/// The job that reads cart `id` as PostgreSQL has it (an empty cart when there is none).
auto read_cart(std::string id) {
  return [id = std::move(id)](persistence::backend& b) -> result<model::cart> {
    pqxx::nontransaction tx{b.pg.connection()}; // one statement: no BEGIN and COMMIT
    return carts::find_cart(tx, id).value_or(model::cart{});
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

cart_entity_actor::behavior_type cart_entity(cart_ptr self, entity_env env, std::string id,
                                             bool fresh) {
  self->state.id = id;
  // Activated by its cart_create (an id just made): no row to read yet.
  if (!fresh)
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
    [self, env](cart_create& msg) -> caf::result<model::cart_view> {
      auto rp = self->make_response_promise<model::cart_view>();
      // One statement, safe twice: run again (a retried job, a create delivered again), it
      // answers the row its first run made, which this actor keeps.
      db_await_job<model::cart>(
        self, env, self->state.id,
        make_batch_job<create_carts>(
          cart_insert{{self->state.id, msg.who.customer_id}, env.settings->carts.ttl_s},
          env.db_timeout),
        [self, rp](model::cart& made) mutable {
          self->state.cart = made;
          model::cart_view v;
          v.basket = std::move(made);
          v.currency = "USD";
          rp.deliver(std::move(v));
        },
        [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
      return rp;
    },
    [self, env, live](cart_read& msg) -> caf::result<model::cart_view> {
      auto* c = live();
      if (!c || !may_see(msg.who, c->customer_id))
        return absent("cart", self->state.id);
      auto rp = self->make_response_promise<model::cart_view>();
      price_cart(self, env, *c, std::move(msg.country), rp);
      return rp;
    },
    [self, env, live](cart_set_item& msg) -> caf::result<model::cart_view> {
      const auto& product_id = msg.product_id;
      const auto quantity = msg.quantity;
      const auto& country = msg.country;
      auto* c = live();
      if (!c || !may_see(msg.who, c->customer_id))
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
        price_then(self, env, next, country, true,
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
                     db_await_job<model::cart>(
                       self, env, self->state.id,
                       make_batch_job<save_carts>(cart_write{next, ttl}, env.db_timeout),
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
      read_product(
        self, env, product_id, true,
        [self, env, save, next, product_id, quantity, rp](model::product& p) mutable {
          // A cart holds one currency: that of its other items (they all share it).
          auto other = std::find_if(next.items.begin(), next.items.end(),
                                    [&](const auto& i) { return i.product_id != product_id; });
          if (other != next.items.end()) {
            auto other_id = other->product_id;
            read_product(
              self, env, other_id, true,
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
    [self, env, live](cart_checkout& msg) -> caf::result<model::order_outcome> {
      auto& req = msg.req;
      auto* c = live();
      if (!c || !may_see(msg.who, c->customer_id))
        return absent("cart", self->state.id);
      if (c->order_id && !req.idempotency_key)
        return make_domain_error(errc::conflict, "the cart was checked out as " + *c->order_id);
      if (!c->order_id && c->items.empty())
        return make_domain_error(errc::conflict, "the cart is empty");
      // The limits of POST /orders, for items the cart may have taken in under looser ones:
      // each line is one step of the placement saga within the request's deadline.
      req.customer_id = c->customer_id;
      req.cart_id = c->id;
      // In a cluster, an actor of a node that just lost this cart may hold older items: the
      // database commits the order only while the cart is at this version.
      req.cart_version = c->version;
      req.items.clear();
      for (const auto& i : c->items)
        req.items.push_back({i.product_id, i.quantity});
      if (!c->order_id) {
        auto errors = order_logic::order_limit_errors(req.items, env.settings->orders);
        if (!errors.empty())
          return make_domain_error(errc::unprocessable, "the cart exceeds an order's limits",
                                   std::move(errors));
      }
      auto rp = self->make_response_promise<model::order_outcome>();
      request_within(self, env.deadlines, env.dir->customers(c->customer_id), env.call_timeout,
                     customer_place{c->customer_id, req})
        .await(
          [self, rp](model::order_outcome& o) mutable {
            if (self->state.cart)
              self->state.cart->order_id = o.placed.id;
            rp.deliver(std::move(o));
          },
          [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
      return rp;
    },
    absent_handler(self, env, [self] { return !self->state.cart; }),
    passivate_handler(self),
  };
}

} // namespace emporium::actors
