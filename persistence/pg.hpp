#pragma once
/// PostgreSQL access through libpqxx. Every call here blocks: a `pg_session` belongs to exactly one
/// blocking worker thread (a detached actor, see actors/db_pool.hpp) and is never touched by a
/// CAF scheduler thread or an Asio thread.

#include "core/model.hpp"

#include <pqxx/pqxx>

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace emporium::persistence {

struct pg_options {
  std::string url;
  int connect_timeout_ms = 2'000;
  int statement_timeout_ms = 5'000;
};

/// One connection, opened lazily and re-opened after it broke.
class pg_session {
 public:
  explicit pg_session(pg_options opts);
  ~pg_session();
  pg_session(const pg_session&) = delete;
  pg_session& operator=(const pg_session&) = delete;

  /// The open connection; connects first when needed. Throws pqxx::broken_connection.
  pqxx::connection& connection();

  /// Forgets the connection, so that the next call reconnects.
  void drop() noexcept;

  bool connected() const noexcept;

 private:
  pg_options opts_;
  std::unique_ptr<pqxx::connection> conn_;
};

/// Runs `sql` as a prepared statement named `name`: PostgreSQL parses and plans it once per
/// connection (on its first use there; a new connection prepares it again) instead of at every
/// execution, and only the parameters travel after that. For the statements of the order flow
/// and the point reads and writes by key, run many times each with plans that do not depend on
/// the values. Lists (their LIMIT and ranges) stay exec_params: a generic plan chosen after a
/// few executions could serve some values worse. `name` must be unique in the program (the
/// store's name, a dot, the statement's): libpqxx refuses one name for two definitions.
template <class... Args>
pqxx::result exec_prepared(pqxx::transaction_base& tx, const char* name, const char* sql,
                           Args&&... args) {
  tx.conn().prepare(name, sql); // a declaration; nothing is sent until its first execution
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

/// Maps an exception thrown by libpqxx (or anything else) to a domain failure. Never lets a
/// server-side message that might carry data through for unavailable or internal errors.
failure to_failure(const std::exception& e);

/// True for errors after which the connection must be dropped.
bool breaks_connection(const std::exception& e);

/// True for errors a retry of the whole transaction may cure (serialization failure, deadlock).
/// actors::after_failed_attempt (actors/db_pool.hpp) is the one place that decides a retry.
bool is_retryable(const std::exception& e);

/// Sleeps a random time in [0, 10 ms * 2^attempt) ("full jitter"); blocking worker threads only.
void backoff_sleep(int attempt);

/// A PostgreSQL array literal of text elements (`{"a","b"}`), each double-quoted with '"' and
/// '\\' escaped: the value of one `$n::text[]` parameter, so a list is still one parameter.
std::string text_array(const std::vector<std::string>& items);

/// A batch statement's rows, each made a value by `from`, by that value's `id`: to answer each
/// input of the batch its own row.
template <class From>
auto by_id(const pqxx::result& rows, From from) {
  std::unordered_map<std::string, std::invoke_result_t<From, const pqxx::row&>> out;
  for (const auto& r : rows) {
    auto x = from(r);
    auto id = x.id;
    out.emplace(std::move(id), std::move(x));
  }
  return out;
}

/// A PostgreSQL array literal of integers (`{1,2}`): the value of one `$n::bigint[]` parameter.
std::string int_array(const std::vector<std::int64_t>& items);

/// `items` cut into runs in which every key is distinct, in order (indexes into `items`): where
/// any of `keys` gives a value its run has already seen, a new run starts. A set-based statement
/// that joins or upserts by key takes one run (a row joined twice would be written once, by
/// either; an upsert refuses it).
template <class T, class... Keys>
std::vector<std::vector<std::size_t>> distinct_runs(const std::vector<T>& items, Keys... keys) {
  std::vector<std::vector<std::size_t>> runs(1);
  std::array<std::unordered_set<std::string_view>, sizeof...(Keys)> seen;
  for (std::size_t i = 0; i < items.size(); ++i) {
    std::size_t k = 0;
    bool repeated = false;
    ((repeated = repeated || seen[k++].count(keys(items[i])) > 0), ...);
    if (repeated) {
      runs.emplace_back();
      for (auto& s : seen)
        s.clear();
    }
    k = 0;
    (seen[k++].insert(keys(items[i])), ...);
    runs.back().push_back(i);
  }
  return runs;
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with millisecond precision.
std::string format_rfc3339(std::int64_t epoch_ms);

} // namespace emporium::persistence
