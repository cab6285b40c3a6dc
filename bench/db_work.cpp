#include "bench/db_work.hpp"

#include <pqxx/pqxx>

namespace emporium::bench {

namespace {

// One statement: the database's commits and rollbacks on every row, with one table's writes.
// (pg_stat_* values are cached for the rest of a transaction: each read is a transaction.)
constexpr const char* counters_sql =
  "SELECT d.xact_commit, d.xact_rollback, t.relname, t.n_tup_ins, t.n_tup_upd, t.n_tup_hot_upd, "
  "t.n_tup_del FROM pg_stat_database d LEFT JOIN pg_stat_user_tables t ON true "
  "WHERE d.datname = current_database()";

} // namespace

struct db_counter_reader::impl {
  explicit impl(const std::string& url) : conn{url} {}
  pqxx::connection conn;
};

db_counter_reader::db_counter_reader(const std::string& pg_url)
  : impl_{std::make_unique<impl>(pg_url)} {}

db_counter_reader::~db_counter_reader() = default;

db_counters db_counter_reader::read() {
  pqxx::read_transaction tx{impl_->conn};
  db_counters c;
  for (const auto& r : tx.exec(counters_sql)) {
    c.commits = r[0].as<std::int64_t>();
    c.rollbacks = r[1].as<std::int64_t>();
    if (r[2].is_null())
      continue;
    c.tables[r[2].as<std::string>()] = {r[3].as<std::int64_t>(), r[4].as<std::int64_t>(),
                                        r[5].as<std::int64_t>(), r[6].as<std::int64_t>()};
  }
  return c;
}

db_counters difference(const db_counters& before, const db_counters& after) {
  db_counters d;
  d.commits = after.commits - before.commits;
  d.rollbacks = after.rollbacks - before.rollbacks;
  for (const auto& [name, a] : after.tables) {
    table_writes b;
    if (auto it = before.tables.find(name); it != before.tables.end())
      b = it->second;
    table_writes w{a.inserted - b.inserted, a.updated - b.updated, a.hot_updated - b.hot_updated,
                   a.deleted - b.deleted};
    if (w.inserted || w.updated || w.deleted)
      d.tables[name] = w;
  }
  return d;
}

nlohmann::json writes_json(const db_counters& window, std::uint64_t orders) {
  auto per_order = [orders](std::int64_t n) -> nlohmann::json {
    if (orders == 0)
      return nullptr;
    return static_cast<double>(n) / static_cast<double>(orders);
  };
  table_writes total;
  nlohmann::json tables = nlohmann::json::object();
  for (const auto& [name, w] : window.tables) {
    total.inserted += w.inserted;
    total.updated += w.updated;
    total.hot_updated += w.hot_updated;
    total.deleted += w.deleted;
    tables[name] = {{"inserted", w.inserted},
                    {"updated", w.updated},
                    {"hot_updated", w.hot_updated},
                    {"deleted", w.deleted},
                    {"inserted_per_order", per_order(w.inserted)},
                    {"updated_per_order", per_order(w.updated)}};
  }
  return {{"commits", window.commits},
          {"rollbacks", window.rollbacks},
          {"inserted", total.inserted},
          {"updated", total.updated},
          {"hot_updated", total.hot_updated},
          {"deleted", total.deleted},
          {"commits_per_order", per_order(window.commits)},
          {"inserted_per_order", per_order(total.inserted)},
          {"updated_per_order", per_order(total.updated)},
          {"tables", tables}};
}

} // namespace emporium::bench
