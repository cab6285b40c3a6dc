#include "actors/product_actor.hpp"

#include "actors/manager.hpp"
#include "actors/product_logic.hpp"
#include "persistence/order_store.hpp"
#include "persistence/product_store.hpp"
#include "persistence/search_store.hpp"

#include <stdexcept>

namespace emporium::actors {

namespace ps = persistence::product_store;

namespace {

/// After a commit, cached search results from before it are retired before the write answers.
/// The product itself has no copy outside its actor: the next activation reads PostgreSQL.
void refresh_cache(persistence::backend& b) {
  persistence::search_store::catalog_changed(b.cache);
}

/// The loads of activating products; a batch of a database worker (make_batch_job): one
/// statement for all of them. A product that does not exist is answered none.
std::vector<result<std::optional<model::product>>> load_products(
  persistence::backend& b, const std::vector<const std::string*>& ids) {
  std::vector<result<std::optional<model::product>>> out;
  for (auto& row : ps::load_many(b, ids))
    out.emplace_back(std::move(row));
  return out;
}

caf::error not_found(const std::string& id) {
  return make_domain_error(errc::not_found, "product " + id + " does not exist");
}

/// Runs `write` on the product's worker and blocks its other messages until it answered: the
/// product written, published before the answer, or the error (then the product is loaded
/// again).
template <class Write>
caf::typed_response_promise<model::product> commit(product_entity* self, Write write) {
  auto rp = self->make_response_promise<model::product>();
  db_await<model::product>(
    self, *self->state.env, self->state.id(), std::move(write),
    [self, rp](model::product& p) mutable {
      // Published before the answer: a read after it sees this version.
      self->state.set(p);
      rp.deliver(std::move(p));
    },
    [self, rp](caf::error& err) mutable {
      // The outcome may be unknown (timeout, lost connection) or the row moved on without
      // us: reload before anything else. The reload is queued on the same worker, so it
      // reads what the failed write left behind, even if that write completes late.
      rp.deliver(std::move(err));
      self->load();
    });
  return rp;
}

} // namespace

product_entity::product_entity(caf::actor_config& cfg, shared_env env, std::string id)
  : shared_behavior_entity(cfg) {
  state.name_as(std::move(id));
  state.env = std::move(env);
}

void product_entity::load() {
  const auto& env = *state.env;
  // Awaited: no message is handled before the state is known.
  db_await_job<std::optional<model::product>>(
    this, env, state.id(), make_batch_job<load_products>(state.id(), env.db_timeout),
    [this](std::optional<model::product>& p) {
      state.set(std::move(p));
      if (!state.product())
        send(this, absent_atom_v);
    },
    [this](caf::error& err) { quit(std::move(err)); });
}

product_entity::behavior_type product_entity::shared_behavior() {
  return {
    [](const product_read&) -> caf::result<model::product> {
      auto* self = current();
      const auto* p = self->state.product();
      if (!p)
        return not_found(self->state.id());
      return *p;
    },
    [](product_create& msg) -> caf::result<model::product> {
      auto* self = current();
      auto& draft = msg.draft;
      if (self->state.product())
        return make_domain_error(errc::conflict, "product " + self->state.id() + " exists");
      auto candidate = product_logic::from_draft(self->state.id(), draft);
      if (auto errs = product_logic::check(candidate); !errs.empty())
        return make_domain_error(errc::invalid_input, "invalid product", std::move(errs));
      return commit(self,
                    [id = self->state.id(), draft = std::move(draft)](persistence::backend& b) {
                      pqxx::work tx{b.pg.connection()};
                      auto p = ps::insert(tx, id, draft);
                      tx.commit();
                      refresh_cache(b);
                      return result<model::product>{std::move(p)};
                    });
    },
    [](product_update& msg) -> caf::result<model::product> {
      auto* self = current();
      const auto& patch = msg.patch;
      const auto expected_version = msg.expected_version;
      if (!self->state.product())
        return not_found(self->state.id());
      const auto& before = *self->state.product();
      if (!product_logic::version_matches(before, expected_version))
        return make_domain_error(errc::precondition_failed,
                                 "the product changed since the given ETag");
      auto next = product_logic::apply(before, patch);
      if (auto errs = product_logic::check(next); !errs.empty())
        return make_domain_error(errc::invalid_input, "invalid product", std::move(errs));
      return commit(
        self, [next = std::move(next), version = before.version, stock_before = before.stock, patch,
               any_version = expected_version == 0](persistence::backend& b) {
          pqxx::work tx{b.pg.connection()};
          auto stock_seen = stock_before; // per attempt: the job may run again
          auto p = ps::update(tx, next, version);
          // No If-Match: an order that took stock meanwhile (its stock message to this actor may
          // still be in flight) must not fail the PATCH; apply it to the row as it is now.
          for (int again = 0; !p && any_version && again < 3; ++again) {
            auto fresh = ps::find(tx, next.id);
            if (!fresh)
              break;
            auto redone = product_logic::apply(*fresh, patch);
            if (!product_logic::check(redone).empty())
              break;
            stock_seen = fresh->stock;
            p = ps::update(tx, redone, fresh->version);
          }
          if (!p)
            return result<model::product>{errc::conflict,
                                          "the product was changed concurrently; retry"};
          if (p->stock != stock_seen)
            persistence::order_store::insert_event(
              tx, persistence::order_store::event_entity::product, p->id, "stock_changed",
              "{\"product_id\":\"" + p->id + "\",\"stock\":" + std::to_string(p->stock) + "}");
          tx.commit();
          refresh_cache(b);
          return result<model::product>{std::move(*p)};
        });
    },
    [](const product_reserve& msg) -> caf::result<model::reservation> {
      auto* self = current();
      const auto& order_id = msg.order_id;
      const auto quantity = msg.quantity;
      auto& st = self->state;
      const auto& env = *st.env;
      if (!st.product())
        return not_found(st.id());
      const auto& p = *st.product();
      auto terms = model::reservation{p.name, p.price_cents, p.currency, p.weight_grams};
      if (st.holds(order_id))
        return terms; // a repeated request for the same order holds nothing more
      if (quantity <= 0)
        return make_domain_error(errc::invalid_input, "quantity must be positive");
      auto available = p.stock - st.held_total();
      if (available < quantity)
        return make_domain_error(
          errc::out_of_stock,
          st.id() + " has " + std::to_string(std::max<std::int64_t>(0, available)) + " available");
      st.add_hold(order_id, {quantity, send_later(self, env.deadlines, env.hold_ttl,
                                                  product_release{st.id(), order_id})});
      return terms;
    },
    [](const product_release& msg) { current()->state.end_hold(msg.order_id); },
    [](const product_stock& msg) {
      auto& st = current()->state;
      st.end_hold(msg.order_id);
      // Absolute values with the row's version: late or repeated messages cannot move the
      // state backwards.
      const auto* p = st.product();
      if (p && msg.version > p->version) {
        auto next = *p;
        next.stock = msg.stock;
        next.version = msg.version;
        st.set(std::move(next));
      } else {
        st.publish();
      }
    },
    [](const product_crash&) -> bool {
      throw std::runtime_error("forced failure of product " + current()->state.id());
    },
    [](absent_atom) {
      auto* self = current();
      if (!self->state.product() && self->state.holds_nothing())
        report_absent(self->state.env->manager, self->state.id(), self->address());
    },
    [](passivate_atom) { current()->quit(); },
  };
}

} // namespace emporium::actors
