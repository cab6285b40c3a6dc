#include "actors/runtime_impl.hpp"

namespace emporium::actors {

runtime::runtime(const config::settings& s) : impl_(std::make_unique<impl>(s)) {}

runtime::~runtime() {
  shutdown();
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
