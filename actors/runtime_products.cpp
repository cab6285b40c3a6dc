#include "actors/product_actor.hpp"
#include "actors/runtime_impl.hpp"
#include "core/ids.hpp"
#include "persistence/product_store.hpp"

namespace emporium::actors {

void runtime::impl::start_products() {
  entity_env env;
  env.pool = &pool;
  env.deadlines = &deadlines;
  env.db_timeout = db_timeout;
  env.snapshots = &snapshots;
  env.lane = db_lane::products; // the loads of products activating at once batch there
  auto cfg = managed("product", entity_factory_of<product_entity>(env), product_counters);
  // GETs answered from a snapshot never reach the manager: they still count as use.
  cfg.used_since = [registry = &snapshots](const std::string& key,
                                           caf::actor_clock::time_point since) {
    return registry->read_since(key, since);
  };
  cfg.reports_exit = true; // product_state's destructor: no monitor per product
  dir.add_local_products(spawn_manager<product_actor>(sys, std::move(cfg)));
}

void runtime::get_product(std::string id, callback<model::product> cb) {
  impl_->ask(impl_->dir.products(id), product_read{id}, std::move(cb));
}

snapshot_ptr runtime::current_product(const std::string& id) const {
  // In a cluster only the owner's snapshots are current: a node that does not hold its lease
  // now, or whose ring sends the key elsewhere, answers through the owner instead. The lease is
  // extended only by acknowledgements of this node's heartbeats, counted from when they were
  // sent (core/lease.hpp), so a node thawed after a freeze does not hold it again before it has
  // been heard from anew; the lease in force at the thaw is the one from before the freeze.
  // (directory::elsewhere is null on a single node, and the refuser without the lease.)
  if (impl_->dir.elsewhere(id))
    return nullptr;
  auto snap = impl_->snapshots.find(id);
  if (snap)
    impl_->snapshot_reads.fetch_add(1, std::memory_order_relaxed);
  return snap;
}

void runtime::create_product(model::product_draft draft, callback<model::product> cb) {
  auto id = core::new_id("prod");
  impl_->ask(impl_->dir.products(id), product_create{id, std::move(draft)}, std::move(cb));
}

void runtime::update_product(std::string id, model::product_patch patch,
                             std::int64_t expected_version, callback<model::product> cb) {
  impl_->ask(impl_->dir.products(id), product_update{id, std::move(patch), expected_version},
             std::move(cb));
}

void runtime::list_products(model::product_query query, callback<model::product_page> cb) {
  impl_->run_db<model::product_page>(
    [query = std::move(query)](persistence::backend& b) {
      pqxx::nontransaction tx{b.pg.connection()}; // one statement: no BEGIN and COMMIT
      auto page = persistence::product_store::list(tx, query);
      return result<model::product_page>{std::move(page)};
    },
    std::move(cb), impl_->db_timeout);
}

void runtime::crash_product(std::string id, callback<bool> cb) {
  impl_->ask(impl_->dir.products(id), product_crash{id}, std::move(cb));
}

} // namespace emporium::actors
