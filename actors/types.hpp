#pragma once
/// The actor system's vocabulary: the type-ID block (the model types, the entity messages of
/// messages.hpp and the atoms), and the error enum registration.
/// Internal to actors/: this header pulls in CAF, so nothing outside actors/ includes it.

#include "core/commerce_model.hpp"
#include "core/model.hpp"

#include <caf/all.hpp>

#include <any>
#include <functional>
#include <optional>
#include <string>
#include <typeinfo>
#include <vector>

namespace emporium::persistence {
struct backend;
}

namespace emporium::actors {

struct db_job;

/// Runs the jobs `batch`, all made by make_batch_job with this very function, together (in as
/// few statements as it can) and answers each, in order. See db_pool.hpp.
using db_batch_fn = std::vector<caf::message> (*)(persistence::backend&,
                                                  const std::vector<const db_job*>& batch);

/// A unit of blocking work for a database worker (see db_pool.hpp). It runs on the worker's own
/// thread with the worker's PostgreSQL session and Redis client, and answers with a message
/// holding its result, or throws. Local only: it carries a closure.
struct db_job {
  std::function<caf::message(persistence::backend&)> run;
  /// Set by make_batch_job: a worker may run this job with the jobs of the same `batch` queued
  /// right behind it; `input` is what `batch` reads of it. `run` still runs it alone.
  db_batch_fn batch = nullptr;
  std::any input;
  /// The entity the job is for (db_await_job sets it), "" for any: a worker that holds
  /// batchable jobs of several kinds keeps one entity's jobs in order.
  std::string key;
  std::chrono::steady_clock::time_point
    deadline; ///< skipped, with errc::timeout, when dequeued later
  /// Skipped with errc::unavailable (503, retry) instead: for work shed under load, whose
  /// deadline comes before the caller's own so that it is refused rather than timed out.
  bool shed_when_late = false;
  /// The type of the answer (make_job's T): lets a test double of the pool tell jobs apart.
  const std::type_info* answers = nullptr;
};

} // namespace emporium::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::db_job)

// CAF 0.17 knows caf::optional but not std::optional; this mirrors its inspect overloads so the
// model's optional fields can travel in messages (and, later, across the network).
namespace std {

template <class Inspector, class T>
typename std::enable_if<Inspector::reads_state, typename Inspector::result_type>::type inspect(
  Inspector& f, optional<T>& x) {
  return x ? f(true, *x) : f(false);
}

template <class Inspector, class T>
typename std::enable_if<Inspector::writes_state, typename Inspector::result_type>::type inspect(
  Inspector& f, optional<T>& x) {
  bool flag = false;
  T tmp{};
  caf::optional_inspect_helper<T> helper{flag, tmp};
  auto guard = caf::detail::make_scope_guard([&] {
    if (flag)
      x = std::move(tmp);
    else
      x.reset();
  });
  return f(flag, helper);
}

} // namespace std

CAF_BEGIN_TYPE_ID_BLOCK(emporium, caf::first_custom_type_id)

CAF_ADD_TYPE_ID(emporium, (emporium::field_error))
CAF_ADD_TYPE_ID(emporium, (std::vector<emporium::field_error>) )
CAF_ADD_TYPE_ID(emporium, (emporium::model::product))
CAF_ADD_TYPE_ID(emporium, (std::optional<emporium::model::product>) )
CAF_ADD_TYPE_ID(emporium, (emporium::model::product_draft))
CAF_ADD_TYPE_ID(emporium, (emporium::model::product_patch))
CAF_ADD_TYPE_ID(emporium, (emporium::model::product_query))
CAF_ADD_TYPE_ID(emporium, (emporium::model::product_page))

CAF_ADD_TYPE_ID(emporium, (emporium::model::address))
CAF_ADD_TYPE_ID(emporium, (emporium::model::customer))
CAF_ADD_TYPE_ID(emporium, (emporium::model::customer_draft))
CAF_ADD_TYPE_ID(emporium, (emporium::model::session_grant))
CAF_ADD_TYPE_ID(emporium, (emporium::model::line_request))
CAF_ADD_TYPE_ID(emporium, (std::vector<emporium::model::line_request>) )
CAF_ADD_TYPE_ID(emporium, (emporium::model::order_line))
CAF_ADD_TYPE_ID(emporium, (std::vector<emporium::model::order_line>) )
CAF_ADD_TYPE_ID(emporium, (emporium::model::payment_info))
CAF_ADD_TYPE_ID(emporium, (emporium::model::order))
CAF_ADD_TYPE_ID(emporium, (emporium::model::order_request))
CAF_ADD_TYPE_ID(emporium, (emporium::model::order_outcome))
CAF_ADD_TYPE_ID(emporium, (emporium::model::order_page))
CAF_ADD_TYPE_ID(emporium, (emporium::model::cart_item))
CAF_ADD_TYPE_ID(emporium, (emporium::model::cart))
CAF_ADD_TYPE_ID(emporium, (emporium::model::cart_view))
CAF_ADD_TYPE_ID(emporium, (emporium::model::reservation))
CAF_ADD_TYPE_ID(emporium, (emporium::model::stock_level))
CAF_ADD_TYPE_ID(emporium, (emporium::model::order_change))
CAF_ADD_TYPE_ID(emporium, (emporium::model::principal))
CAF_ADD_TYPE_ID(emporium, (std::vector<std::string>) )

CAF_ADD_ATOM(emporium, emporium::actors, passivate_atom, "passivate")
CAF_ADD_ATOM(emporium, emporium::actors, sweep_atom, "sweep")
CAF_ADD_ATOM(emporium, emporium::actors, absent_atom, "absent")
CAF_ADD_ATOM(emporium, emporium::actors, rebalance_atom, "rebalance")
CAF_ADD_ATOM(emporium, emporium::actors, tick_atom, "tick")
CAF_ADD_ATOM(emporium, emporium::actors, dial_atom, "dial")
CAF_ADD_ATOM(emporium, emporium::actors, link_down_atom, "linkdown")
CAF_ADD_ATOM(emporium, emporium::actors, exited_atom, "exited")

#define EMPORIUM_INSIDE_TYPE_ID_BLOCK
#include "actors/messages.hpp"
#undef EMPORIUM_INSIDE_TYPE_ID_BLOCK

CAF_END_TYPE_ID_BLOCK(emporium)

CAF_ERROR_CODE_ENUM(emporium::errc, "emporium")

namespace emporium::actors {

/// Builds a caf::error of the domain category, with a human-readable detail.
caf::error make_domain_error(errc code, std::string detail, std::vector<field_error> errors = {});

/// The reverse: any caf::error (domain, or CAF's own such as a request timeout) as a failure.
failure to_failure(const caf::error& e);

/// Registers the type-ID block, the error category and the io module on a config.
void register_types(caf::actor_system_config& cfg);

} // namespace emporium::actors
