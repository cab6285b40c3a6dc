#include "actors/payment_sweeper.hpp"

#include "actors/order_actor.hpp"
#include "persistence/order_store.hpp"

#include <algorithm>

namespace emporium::actors {

namespace os = persistence::order_store;

caf::behavior payment_sweeper(caf::event_based_actor* self, entity_env env) {
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
                    [env, stale_ms](persistence::backend& b) -> result<std::vector<std::string>> {
                      pqxx::read_transaction tx{b.pg.connection()};
                      // Another node sweeping right now: this one skips its turn.
                      // Refunds share the payment workers with live charges: a few per sweep.
                      auto work = os::sweep(tx, 500, stale_ms, env.payments->name(), 50);
                      tx.commit();
                      if (!work)
                        return std::vector<std::string>{};
                      // Each refund owed goes to its order's payment worker, behind any job of
                      // that order still there; the job records the provider's answer itself.
                      for (const auto& r : work->refunds)
                        caf::anon_send(env.payment_workers->for_key(r.order_id),
                                       refund_job(env, r.order_id, r.reference));
                      return std::move(work->orders);
                    },
                    env.db_timeout))
        .then(
          [self, env, period](std::vector<std::string>& ids) {
            // Anonymous: a cancellation the expiry causes delivers the order to the sender,
            // and no answer may come back here, where nothing handles it.
            for (const auto& id : ids)
              caf::anon_send(env.dir->orders(id), order_expire{id});
            self->delayed_send(self, period, sweep_atom_v);
          },
          [self, period](caf::error&) { self->delayed_send(self, period, sweep_atom_v); });
    },
  };
}

} // namespace emporium::actors
