#include "actors/customer_actor.hpp"

#include "actors/order_actor.hpp"

#include "core/ids.hpp"
#include "persistence/customer_store.hpp"
#include "persistence/order_store.hpp"

#include <spdlog/spdlog.h>

namespace emporium::actors {

namespace customers = persistence::customer_store;
namespace os = persistence::order_store;

namespace {

using customer_ptr = customer_entity_actor::stateful_pointer<customer_state>;

/// What a retry under the key answers, from the record `found` (none: a fresh outcome, not
/// replayed). A record that cannot be decoded is a fault of ours: 500, logged, never a crash.
result<model::order_outcome> replay_of(const std::optional<os::idempotent_outcome>& found,
                                       const os::idempotency_ref& idem) {
  if (!found)
    return model::order_outcome{};
  if (found->request_hash != idem.request_hash)
    return failure{
      errc::unprocessable, "this Idempotency-Key was used with a different request", {}};
  if (found->unreadable) {
    spdlog::error("the stored answer of Idempotency-Key '{}' of customer {} cannot be decoded",
                  idem.key, idem.customer_id);
    return failure{errc::internal, "the stored answer for this Idempotency-Key cannot be read", {}};
  }
  if (found->placed)
    return model::order_outcome{true, *found->placed};
  return *found->failed;
}

/// Answers a placement under an Idempotency-Key that failed with `err`: what the key recorded,
/// when it recorded anything (the request was answered before, or is being placed through
/// another node), else `err`, recorded first when it is a verdict on the request itself.
void answer_failed_under_key(customer_ptr self, const entity_env& env,
                             const model::order_request& req, caf::error err,
                             caf::typed_response_promise<model::order_outcome> rp) {
  auto f = to_failure(err);
  os::idempotency_ref idem{req.customer_id, *req.idempotency_key, req.request_hash};
  // Only a verdict on the request itself is recorded. Out of stock, an unknown product, a
  // conflict or any failure of a checkout (which the cart's contents decide, and the key's
  // request hash does not cover) may come out differently on a retry.
  bool record = os::replayable_failure(f.code) && !req.cart_id;
  db_await<model::order_outcome>(
    self, env, self->state.id,
    [idem, f, record](persistence::backend& b) -> result<model::order_outcome> {
      pqxx::work tx{b.pg.connection()};
      auto replay = replay_of(os::find_idempotent(tx, idem.customer_id, idem.key), idem);
      if (replay && !replay->replayed) {
        if (record)
          os::store_idempotent_failure(tx, idem, f);
        tx.commit();
        return f;
      }
      return replay;
    },
    [rp](model::order_outcome& o) mutable { rp.deliver(std::move(o)); },
    [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
}

/// Asks a fresh order actor to place the request. Under an Idempotency-Key, the key is looked
/// up only when the placement failed: the placement itself records the key with the order, and
/// a key already answered makes it fail (its record conflicts), so a retry finds that answer
/// then, whatever the cause of the failure (the stock may be gone by now).
void place_new(customer_ptr self, const entity_env& env, model::order_request req,
               caf::typed_response_promise<model::order_outcome> rp) {
  auto order_id = core::new_id("ord");
  request_within(self, env.deadlines, env.dir->orders(order_id), env.call_timeout,
                 order_create{order_id, req})
    .await(
      [rp](model::order& o) mutable {
        rp.deliver(model::order_outcome{false, std::move(o)});
      },
      [self, env, req, rp](caf::error& err) mutable {
        if (!req.idempotency_key) {
          rp.deliver(std::move(err));
          return;
        }
        if (to_failure(err).code == errc::timeout) {
          // The order may still commit: its placement may wait for the committer up to its
          // deadline (db_timeout), then run up to the statement timeout (less than that).
          self->state.placing[*req.idempotency_key] = std::chrono::steady_clock::now()
                                                      + env.call_timeout + 2 * env.db_timeout;
        }
        answer_failed_under_key(self, env, req, std::move(err), rp);
      });
}

/// Whether a placement under `key` that this actor stopped waiting for may still commit (and
/// forgets the keys whose placements are over by now).
bool still_placing(customer_state& st, const std::string& key) {
  auto now = std::chrono::steady_clock::now();
  for (auto it = st.placing.begin(); it != st.placing.end();)
    it = it->second <= now ? st.placing.erase(it) : std::next(it);
  return st.placing.count(key) > 0;
}

} // namespace

customer_entity_actor::behavior_type customer_entity(customer_ptr self, entity_env env,
                                                     std::string id) {
  self->state.id = id;
  load_then<model::customer>(
    self, env, id,
    [id](persistence::backend& b) -> result<model::customer> {
      pqxx::nontransaction tx{b.pg.connection()}; // one statement: no BEGIN and COMMIT
      return customers::find_customer(tx, id).value_or(model::customer{});
    },
    [self, env](model::customer c) {
      if (!c.id.empty())
        self->state.customer = std::move(c);
      else
        self->send(self, absent_atom_v);
    });
  return {
    [self](const customer_read& msg) -> caf::result<model::customer> {
      if (!self->state.customer || !may_see(msg.who, self->state.id))
        return absent("customer", self->state.id);
      return *self->state.customer;
    },
    [self, env](customer_place& msg) -> caf::result<model::order_outcome> {
      auto& req = msg.req;
      if (!self->state.customer)
        return absent("customer", self->state.id);
      req.customer_id = self->state.id;
      auto rp = self->make_response_promise<model::order_outcome>();
      // One order at a time per customer (awaited), so two requests with one key on this node
      // never both place; across nodes the key's primary key decides.
      if (req.idempotency_key && still_placing(self->state, *req.idempotency_key)) {
        // The answer the key has by now, if that placement committed meanwhile; else 409.
        answer_failed_under_key(self, env, req,
                                make_domain_error(errc::conflict,
                                                  "a request with this Idempotency-Key is still "
                                                  "being placed; retry shortly"),
                                rp);
        return rp;
      }
      place_new(self, env, std::move(req), rp);
      return rp;
    },
    [self](const customer_points& msg) {
      auto& c = self->state.customer;
      if (c && msg.version > c->version) {
        c->loyalty_points = msg.points;
        c->version = msg.version;
      }
    },
    absent_handler(self, env, [self] { return !self->state.customer; }),
    passivate_handler(self),
  };
}

} // namespace emporium::actors
