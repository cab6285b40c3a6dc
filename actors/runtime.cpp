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
  auto snapshot = [](const kind_counters& c) {
    return kind_stats{c.active.load(), c.activations.load(), c.passivations.load(),
                      c.crashes.load()};
  };
  s.products = snapshot(*impl_->product_counters);
  s.customers = snapshot(*impl_->customer_counters);
  s.carts = snapshot(*impl_->cart_counters);
  s.orders = snapshot(*impl_->order_counters);
  s.db_in_use = impl_->pool.counters().in_use.load();
  s.db_waiting = impl_->pool.counters().waiting.load();
  s.db_size = static_cast<int>(impl_->pool.size());
  s.db_retries = impl_->pool.counters().retries.load();
  s.auth_db_retries = impl_->signups.counters().retries.load()
                      + impl_->logins.counters().retries.load();
  s.signup_hashes = impl_->signup_hashes->load();
  s.auth_waiting = impl_->signups.counters().waiting.load()
                   + impl_->logins.counters().waiting.load();
  s.db_breaker = static_cast<int>(impl_->pool.counters().breaker.current());
  s.db_breaker_opened = impl_->pool.counters().breaker.times_opened();
  s.cache_breaker = persistence::redis_cache::breaker_state();
  s.cache_pending_invalidations = persistence::redis_cache::pending_invalidations();
  return s;
}

void runtime::shutdown() {
  impl_->shutdown();
}

} // namespace emporium::actors
