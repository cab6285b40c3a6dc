#include "actors/product_actor.hpp"
#include "actors/runtime_impl.hpp"
#include "persistence/ids.hpp"
#include "persistence/product_store.hpp"

namespace emporium::actors {

void runtime::impl::start_products() {
  entity_env env{&pool, db_timeout};
  manager_config mc{"product",
                    [env](caf::local_actor* self, const std::string& key) {
                      auto own = env;
                      own.manager = self->address();
                      return caf::actor_cast<caf::actor>(self->spawn(product_entity, own, key));
                    },
                    std::chrono::seconds(settings.actors.idle_timeout_s), product_counters};
  dir.add_local(entity_kind::product, spawn_manager(sys, std::move(mc)));
}

void runtime::get_product(std::string id, callback<model::product> cb) {
  auto& mgr = impl_->products(id);
  impl_->call<model::product>(mgr, caf::make_message(std::move(id), read_atom_v), std::move(cb));
}

void runtime::create_product(model::product_draft draft, callback<model::product> cb) {
  auto id = persistence::new_id("prod");
  auto& mgr = impl_->products(id);
  impl_->call<model::product>(mgr, caf::make_message(std::move(id), create_atom_v, std::move(draft)),
                              std::move(cb));
}

void runtime::update_product(std::string id, model::product_patch patch,
                             std::int64_t expected_version, callback<model::product> cb) {
  auto& mgr = impl_->products(id);
  impl_->call<model::product>(
    mgr, caf::make_message(std::move(id), patch_atom_v, std::move(patch), expected_version),
    std::move(cb));
}

void runtime::list_products(model::product_query query, callback<model::product_page> cb) {
  impl_->run_db<model::product_page>(
    [query = std::move(query)](persistence::backend& b) {
      pqxx::read_transaction tx{b.pg.connection()};
      auto page = persistence::product_store::list(tx, query);
      tx.commit();
      return result<model::product_page>{std::move(page)};
    },
    std::move(cb), impl_->db_timeout);
}

void runtime::crash_product(std::string id, callback<bool> cb) {
  auto& mgr = impl_->products(id);
  impl_->call<bool>(mgr, caf::make_message(std::move(id), crash_atom_v), std::move(cb));
}

} // namespace emporium::actors
