#include "actors/retention_service.hpp"

#include "persistence/retention_store.hpp"

#include <spdlog/spdlog.h>

namespace emporium::actors {

namespace rs = persistence::retention_store;

caf::behavior retention_service(caf::event_based_actor* self, entity_env env) {
  const auto& r = env.settings->retention;
  const rs::limits limits{r.expired_grace_h, r.idempotency_keys_h, r.events_h, r.batch_size};
  const auto period = std::chrono::seconds(r.interval_s);
  self->send(self, sweep_atom_v);
  return {
    [self, env, limits, period](sweep_atom) {
      // The job answers whether a batch was full (more is left); it only reads `limits`, so a
      // re-run after a lost connection deletes the next batch, nothing twice.
      self
        ->request(env.pool->any(), env.db_timeout,
                  make_job(
                    [limits](persistence::backend& b) -> result<bool> {
                      pqxx::work tx{b.pg.connection()};
                      auto done = rs::purge(tx, limits);
                      tx.commit();
                      if (!done.ran) {
                        spdlog::debug("retention: another node is running it; skipped");
                        return false;
                      }
                      if (done.sessions + done.carts + done.idempotency_keys + done.events > 0)
                        spdlog::info(
                          "retention: deleted {} sessions, {} carts, {} idempotency "
                          "keys, {} events",
                          done.sessions, done.carts, done.idempotency_keys, done.events);
                      return done.more(limits.batch_size);
                    },
                    env.db_timeout))
        .then(
          [self, period](bool more) {
            if (more)
              self->send(self, sweep_atom_v);
            else
              self->delayed_send(self, period, sweep_atom_v);
          },
          [self, period](caf::error& e) {
            spdlog::warn("retention: run failed ({}); next in {} s", to_failure(e).detail,
                         std::chrono::duration_cast<std::chrono::seconds>(period).count());
            self->delayed_send(self, period, sweep_atom_v);
          });
    },
  };
}

} // namespace emporium::actors
