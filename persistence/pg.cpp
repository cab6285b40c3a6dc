#include "persistence/pg.hpp"

#include <sodium.h>

#include <ctime>
#include <thread>

namespace emporium::persistence {

namespace {

std::string conninfo(const pg_options& opts) {
  // libpq reads these from the URI; connect_timeout has a resolution of seconds (at least 2).
  auto url = opts.url;
  url += url.find('?') == std::string::npos ? '?' : '&';
  url += "connect_timeout=" + std::to_string(std::max(2, (opts.connect_timeout_ms + 999) / 1000));
  url += "&application_name=emporium";
  // Notice a dead server or a cut network within seconds instead of the kernel's two hours.
  url += "&keepalives=1&keepalives_idle=5&keepalives_interval=2&keepalives_count=3";
  return url;
}

} // namespace

pg_session::pg_session(pg_options opts) : opts_(std::move(opts)) {}

pg_session::~pg_session() = default;

pqxx::connection& pg_session::connection() {
  if (conn_ && conn_->is_open())
    return *conn_;
  conn_.reset();
  auto conn = std::make_unique<pqxx::connection>(conninfo(opts_));
  pqxx::nontransaction tx{*conn};
  tx.exec_params("SELECT set_config('statement_timeout', $1, false)",
                 std::to_string(opts_.statement_timeout_ms));
  tx.exec_params("SELECT set_config('idle_in_transaction_session_timeout', $1, false)",
                 std::to_string(opts_.statement_timeout_ms * 2));
  conn_ = std::move(conn);
  return *conn_;
}

void pg_session::drop() noexcept {
  try {
    conn_.reset();
  } catch (...) {
    // Closing a broken connection must not throw out of an error path.
  }
}

bool pg_session::connected() const noexcept {
  return conn_ && conn_->is_open();
}

failure to_failure(const std::exception& e) {
  if (dynamic_cast<const pqxx::unique_violation*>(&e))
    return failure{errc::conflict, "a unique value is already taken", {}};
  if (dynamic_cast<const pqxx::check_violation*>(&e))
    return failure{errc::conflict, "the change would violate a constraint", {}};
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e))
    return failure{errc::unavailable, "the database connection was lost while committing", {}};
  if (dynamic_cast<const pqxx::broken_connection*>(&e))
    return failure{errc::unavailable, "the database is unreachable", {}};
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e))
    return failure{errc::unavailable, "the database could not serialize the transaction", {}};
  if (auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    // 57014 query_canceled (statement timeout), 57P0x shutdown, 53xxx insufficient resources.
    const auto& state = sql->sqlstate();
    if (state == "57014" || state.rfind("57P", 0) == 0 || state.rfind("53", 0) == 0
        || state.rfind("08", 0) == 0)
      return failure{errc::unavailable, "the database is unavailable", {}};
  }
  return failure{errc::internal, "internal database error", {}};
}

bool breaks_connection(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e)
      || dynamic_cast<const pqxx::in_doubt_error*>(&e))
    return true;
  if (auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const auto& state = sql->sqlstate();
    return state.rfind("57P", 0) == 0 || state.rfind("08", 0) == 0;
  }
  return false;
}

bool is_retryable(const std::exception& e) {
  return dynamic_cast<const pqxx::serialization_failure*>(&e)
         || dynamic_cast<const pqxx::deadlock_detected*>(&e);
}

void backoff_sleep(int attempt) {
  auto cap_us = 10'000u << std::min(attempt, 6);
  std::this_thread::sleep_for(std::chrono::microseconds(randombytes_uniform(cap_us)));
}

std::string int_array(const std::vector<std::int64_t>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i)
      out += ',';
    out += std::to_string(items[i]);
  }
  out += '}';
  return out;
}

std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i)
      out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string format_rfc3339(std::int64_t epoch_ms) {
  auto secs = static_cast<std::time_t>(epoch_ms / 1000);
  auto ms = static_cast<int>(epoch_ms % 1000);
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  auto n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ", ms);
  return buf;
}

} // namespace emporium::persistence
