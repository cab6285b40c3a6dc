#include "actors/runtime.hpp"

#include "actors/db_pool.hpp"
#include "actors/directory.hpp"
#include "actors/manager.hpp"
#include "actors/product_actor.hpp"
#include "persistence/ids.hpp"
#include "persistence/product_store.hpp"

#include <spdlog/spdlog.h>

#include <atomic>

namespace emporium::actors {

namespace {

/// A closure run inside a bridge actor, so that a non-actor thread can make a request and get
/// the answer through a callback.
struct bridge_call {
  std::function<void(caf::event_based_actor*)> run;
};

} // namespace
} // namespace emporium::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::bridge_call)

namespace emporium::actors {

namespace {

caf::behavior bridge(caf::event_based_actor* self) {
  return {
    [self](bridge_call& call) { call.run(self); },
  };
}

class system_config : public caf::actor_system_config {
 public:
  explicit system_config(const config::settings& s) {
    register_types(*this);
    set("scheduler.max-threads", static_cast<size_t>(s.actors.scheduler_threads));
    set("logger.verbosity", caf::atom("quiet"));
  }
};

template <class T>
void invoke(const callback<T>& cb, result<T> r) {
  try {
    cb(std::move(r));
  } catch (const std::exception& e) {
    spdlog::error("a runtime callback threw: {}", e.what());
  }
}

} // namespace

struct runtime::impl {
  explicit impl(const config::settings& s)
    : settings(s),
      cfg(s),
      sys(cfg),
      pool(sys, s),
      timeout(std::chrono::milliseconds(s.http.request_timeout_ms)),
      db_timeout(std::chrono::milliseconds(s.postgres.statement_timeout_ms + 500)),
      product_counters(std::make_shared<kind_counters>()) {
    for (int i = 0; i < std::max(1, s.actors.scheduler_threads); ++i)
      bridges.push_back(sys.spawn(bridge));
    entity_env env{&pool, db_timeout};
    manager_config mc{"product",
                      [env](caf::local_actor* self, const std::string& key) {
                        return caf::actor_cast<caf::actor>(self->spawn(product_entity, env, key));
                      },
                      std::chrono::seconds(s.actors.idle_timeout_s), product_counters};
    dir.add_local(entity_kind::product, spawn_manager(sys, std::move(mc)));
  }

  const caf::actor& next_bridge() {
    return bridges[next.fetch_add(1, std::memory_order_relaxed) % bridges.size()];
  }

  /// Sends `msg` to `target` and hands the typed answer, or the failure, to `cb`.
  template <class T>
  void call(caf::actor target, caf::message msg, callback<T> cb) {
    caf::anon_send(next_bridge(), bridge_call{[target = std::move(target), msg = std::move(msg),
                                               cb = std::move(cb),
                                               t = timeout](caf::event_based_actor* self) mutable {
      self->request(target, t, std::move(msg))
        .then([cb](T& x) { invoke(cb, result<T>{std::move(x)}); },
              [cb](caf::error& e) { invoke(cb, result<T>{to_failure(e)}); });
    }});
  }

  /// Runs a blocking job on the least busy database worker.
  template <class T, class Fn>
  void run_db(Fn fn, callback<T> cb, caf::timespan t) {
    auto job = make_job(std::move(fn), t);
    call<T>(pool.any(), caf::make_message(std::move(job)), std::move(cb));
  }

  const caf::actor& products(const std::string& id) const {
    return dir.manager_for(entity_kind::product, id);
  }

  void shutdown() {
    if (stopped.exchange(true))
      return;
    dir.for_each_manager([](const caf::actor& m) {
      caf::anon_send_exit(m, caf::exit_reason::user_shutdown);
    });
    for (auto& b : bridges)
      caf::anon_send_exit(b, caf::exit_reason::user_shutdown);
    pool.stop();
    sys.await_all_actors_done();
  }

  config::settings settings;
  system_config cfg;
  caf::actor_system sys;
  db_pool pool;
  caf::timespan timeout;
  caf::timespan db_timeout;
  std::shared_ptr<kind_counters> product_counters;
  directory dir;
  std::vector<caf::actor> bridges;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stopped{false};
};

runtime::runtime(const config::settings& s) : impl_(std::make_unique<impl>(s)) {}

runtime::~runtime() {
  shutdown();
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

void runtime::check_ready(callback<bool> cb) {
  impl_->run_db<bool>(
    [](persistence::backend& b) {
      pqxx::nontransaction tx{b.pg.connection()};
      tx.exec("SELECT 1");
      return result<bool>{true};
    },
    std::move(cb), std::chrono::seconds(2));
}

void runtime::crash_product(std::string id, callback<bool> cb) {
  auto& mgr = impl_->products(id);
  impl_->call<bool>(mgr, caf::make_message(std::move(id), crash_atom_v), std::move(cb));
}

runtime_stats runtime::stats() const {
  runtime_stats s;
  const auto& pc = *impl_->product_counters;
  s.products = {pc.active.load(), pc.activations.load(), pc.passivations.load(),
                pc.crashes.load()};
  s.db_in_use = impl_->pool.counters().in_use.load();
  s.db_waiting = impl_->pool.counters().waiting.load();
  s.db_size = static_cast<int>(impl_->pool.size());
  return s;
}

void runtime::shutdown() {
  impl_->shutdown();
}

} // namespace emporium::actors
