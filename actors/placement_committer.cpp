#include "actors/placement_committer.hpp"

#include "persistence/search_store.hpp"

#include <spdlog/spdlog.h>

#include <deque>
#include <optional>

namespace emporium::actors {

namespace os = persistence::order_store;

result<model::order_change> placement_answer(os::batch_outcome&& b) {
  auto& placed = b.placed;
  if (!placed.short_products.empty()) {
    std::vector<field_error> errs;
    for (const auto& id : placed.short_products)
      errs.push_back({"items", id + " is out of stock"});
    return failure{errc::out_of_stock, "insufficient stock", std::move(errs)};
  }
  if (placed.over_unpaid_cap)
    // 409, not 429: waiting alone does not help soon (an unpaid order holds its stock for
    // orders.payment_timeout_s); paying or cancelling one of them does.
    return failure{errc::conflict,
                   "you have " + std::to_string(placed.open_unpaid)
                     + " unpaid orders, the most allowed at once; pay or cancel one first",
                   {}};
  if (b.failed) {
    if (b.failed->code == errc::internal)
      spdlog::error("placing order {} failed: {} ({})", placed.stored.id, b.message, b.sqlstate);
    return std::move(*b.failed);
  }
  model::order_change ch;
  for (const auto& c : placed.changes)
    ch.stock.push_back({c.product_id, c.stock, c.version});
  ch.placed = std::move(placed.stored);
  return ch;
}

namespace {

/// A placement, or (`read` set) a stock read that waits for the placements queued before it.
struct pending_placement {
  placement_job job;
  caf::response_promise rp;
  std::optional<placement_stock_read> read;
};

struct committer_state {
  std::unique_ptr<persistence::backend> backend;
  std::shared_ptr<pool_counters> counters;
  std::deque<pending_placement> queue;
  bool flush_sent = false;
  static inline const char* name = "placement_committer";
};

using committer_ptr = caf::stateful_actor<committer_state>*;

void answer(caf::response_promise& rp, result<model::order_change> r) {
  if (r)
    rp.deliver(caf::make_message(std::move(r.value())));
  else
    rp.deliver(make_domain_error(r.error().code, r.error().detail, r.error().errors));
}

void answer_all(std::vector<pending_placement>& batch, const failure& f) {
  for (auto& p : batch)
    answer(p.rp, f);
}

/// Places `batch` in one transaction and answers each order.
void run_batch(committer_ptr self, std::vector<pending_placement>& batch) {
  auto& st = self->state;
  auto& breaker = st.counters->breaker;
  if (!breaker.allow())
    return answer_all(batch,
                      failure{errc::unavailable, "PostgreSQL is unavailable; retry shortly", {}});
  std::vector<const os::placement_request*> reqs;
  for (const auto& p : batch)
    reqs.push_back(&p.job.req);
  auto earliest = batch.front().job.deadline;
  for (const auto& p : batch)
    earliest = std::min(earliest, p.job.deadline);
  for (int attempt = 1;; ++attempt) {
    bool was_connected = st.backend->pg.connected();
    try {
      pqxx::work tx{st.backend->pg.connection()};
      auto outcomes = os::place_orders(tx, reqs);
      tx.commit();
      breaker.on_success();
      bool stock_changed = false;
      for (const auto& o : outcomes)
        stock_changed = stock_changed || !o.placed.changes.empty();
      if (stock_changed) {
        // Search shows whether a product is in stock.
        try {
          persistence::search_store::catalog_changed(st.backend->cache);
        } catch (const std::exception& e) {
          spdlog::warn("placement committer: the search cache was not retired: {}", e.what());
        }
      }
      for (std::size_t i = 0; i < batch.size(); ++i)
        answer(batch[i].rp, placement_answer(std::move(outcomes[i])));
      return;
    } catch (const std::exception& e) {
      // As a database worker does: lost before COMMIT, the batch may run again; lost during
      // COMMIT, it is in doubt and answered so to every order in it.
      auto f = after_failed_attempt(*st.backend, *st.counters, e, was_connected, attempt, earliest);
      if (!f)
        continue;
      if (f->code == errc::internal)
        spdlog::error("placing a batch of {} orders failed: {}", batch.size(), e.what());
      return answer_all(batch, *f);
    }
  }
}

/// Answers the stock of `read`'s products (or the failure to read it).
void run_read(committer_ptr self, const placement_stock_read& read, caf::response_promise& rp) {
  try {
    pqxx::nontransaction tx{self->state.backend->pg.connection()}; // one statement
    model::order_change ch;
    for (const auto& c : os::stock_levels(tx, read.product_ids))
      ch.stock.push_back({c.product_id, c.stock, c.version});
    rp.deliver(caf::make_message(std::move(ch)));
  } catch (const std::exception& e) {
    if (persistence::breaks_connection(e))
      self->state.backend->pg.drop();
    auto f = persistence::to_failure(e);
    rp.deliver(make_domain_error(f.code, f.detail));
  }
}

caf::behavior placement_committer(committer_ptr self, config::settings settings,
                                  std::shared_ptr<pool_counters> counters) {
  self->state.backend = std::make_unique<persistence::backend>(settings);
  self->state.counters = std::move(counters);
  return {
    [self](placement_job& job) -> caf::result<caf::message> {
      auto& st = self->state;
      auto rp = self->make_response_promise();
      st.queue.push_back(pending_placement{std::move(job), rp, std::nullopt});
      // The reminder queues behind every placement already in the mailbox: those arrived while
      // the last transaction was in flight, and all of them go into the next one.
      if (!st.flush_sent) {
        st.flush_sent = true;
        self->send(self, placement_flush{});
      }
      return rp;
    },
    [self](placement_stock_read& read) -> caf::result<caf::message> {
      auto& st = self->state;
      auto rp = self->make_response_promise();
      if (st.queue.empty()) {
        run_read(self, read, rp);
        return rp;
      }
      st.queue.push_back(pending_placement{{}, rp, std::move(read)});
      return rp;
    },
    [self](placement_flush) {
      auto& st = self->state;
      st.flush_sent = false;
      // Reads first in line run now: every placement before them is done.
      while (!st.queue.empty() && st.queue.front().read) {
        auto p = std::move(st.queue.front());
        st.queue.pop_front();
        run_read(self, *p.read, p.rp);
      }
      std::vector<pending_placement> batch;
      auto now = std::chrono::steady_clock::now();
      while (!st.queue.empty() && !st.queue.front().read && batch.size() < placement_batch_cap) {
        auto p = std::move(st.queue.front());
        st.queue.pop_front();
        if (now > p.job.deadline)
          answer(p.rp,
                 failure{errc::timeout, "the request expired while queued for the database", {}});
        else
          batch.push_back(std::move(p));
      }
      if (!batch.empty())
        run_batch(self, batch);
      if (!st.queue.empty() && !st.flush_sent) {
        st.flush_sent = true;
        self->send(self, placement_flush{});
      }
    },
  };
}

} // namespace

caf::actor spawn_placement_committer(caf::actor_system& sys, const config::settings& s,
                                     std::shared_ptr<pool_counters> counters) {
  return sys.spawn<caf::detached>(placement_committer, s, std::move(counters));
}

} // namespace emporium::actors
