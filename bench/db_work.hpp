#pragma once
/// What PostgreSQL did over a run's measured window, from its cumulative statistics: the
/// commits of the server's database (pg_stat_database) and the rows written to each of its
/// tables (pg_stat_user_tables), inserted, updated, and of the updates those that were HOT
/// (heap-only: no index touched). Divided by the orders of the window, they say what one
/// order costs the database in writes, which the CPU figures alone do not: see bench/README.md,
/// "What an order writes".
///
/// PostgreSQL's backends publish these counters when they go idle, at most once a second, so a
/// window's figures are late by up to a second at both edges: under a steady load the two
/// errors cancel; for a short window (under ~5 s) they do not.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace emporium::bench {

struct table_writes {
  std::int64_t inserted = 0;
  std::int64_t updated = 0;
  std::int64_t hot_updated = 0; ///< of `updated`
  std::int64_t deleted = 0;
};

struct db_counters {
  std::int64_t commits = 0;
  std::int64_t rollbacks = 0;
  std::map<std::string, table_writes> tables;
};

/// `after` less `before`, tables that wrote nothing left out.
db_counters difference(const db_counters& before, const db_counters& after);

/// The window's writes as JSON: totals, and per table; each also per order when `orders` > 0.
nlohmann::json writes_json(const db_counters& window, std::uint64_t orders);

/// Reads the counters of the database `pg_url` names, on a connection opened once (so that the
/// reads at the window's edges cost one statement each, not a connection).
class db_counter_reader {
 public:
  explicit db_counter_reader(const std::string& pg_url);
  ~db_counter_reader();
  db_counter_reader(const db_counter_reader&) = delete;
  db_counter_reader& operator=(const db_counter_reader&) = delete;

  db_counters read();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace emporium::bench
