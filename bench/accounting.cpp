#include "bench/accounting.hpp"

#include <pqxx/pqxx>

#include <set>

namespace emporium::bench::accounting {

namespace {

// -- the SQL of the accounting, in one place ----------------------------------------------------
// Written against the commerce schema of persistence/migrations.cpp: products(id, stock),
// orders(id, customer_id, status, created_at), order_lines(order_id, product_id, quantity).
// Cancelled orders have returned their stock (status 'cancelled'). Adjust here if it changes.

constexpr const char* product_ids_sql = "SELECT id FROM products ORDER BY id";
constexpr const char* product_ids_limit_sql = "SELECT id FROM products ORDER BY id LIMIT $1";

/// now() is the start of the snapshot's transaction: every order of the run starts later.
constexpr const char* clock_sql = "SELECT now()::text";
constexpr const char* stock_sql = "SELECT id, stock FROM products WHERE id = ANY($1::text[])";

/// Rows per acknowledged id: exactly one each.
constexpr const char* acked_orders_sql =
  "SELECT id, customer_id, status, count(*) OVER (PARTITION BY id) FROM orders "
  "WHERE id = ANY($1::text[])";
constexpr const char* acked_lines_sql =
  "SELECT order_id, product_id, sum(quantity)::bigint FROM order_lines "
  "WHERE order_id = ANY($1::text[]) GROUP BY order_id, product_id";

/// Every order of this run's customers placed since the snapshot, acknowledged or not.
constexpr const char* run_orders_sql =
  "SELECT id, status FROM orders WHERE customer_id = ANY($1::text[]) "
  "AND created_at >= $2::timestamptz";
/// Units those orders still hold (cancelled orders gave theirs back).
constexpr const char* run_units_sql =
  "SELECT l.product_id, sum(l.quantity)::bigint FROM order_lines l "
  "JOIN orders o ON o.id = l.order_id "
  "WHERE o.customer_id = ANY($1::text[]) AND o.created_at >= $2::timestamptz "
  "AND o.status <> 'cancelled' GROUP BY l.product_id";
constexpr const char* negative_stock_sql =
  "SELECT id, stock FROM products WHERE stock < 0 ORDER BY id LIMIT 20";
constexpr const char* negative_stock_count_sql = "SELECT count(*) FROM products WHERE stock < 0";

constexpr std::size_t max_failure_lines = 30;

void add_failure(verdict& v, std::string line) {
  v.passed = false;
  if (v.failures.size() < max_failure_lines)
    v.failures.push_back(std::move(line));
  else if (v.failures.size() == max_failure_lines)
    v.failures.push_back("... (more failures not listed)");
}

} // namespace

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

std::vector<std::string> load_product_ids(const std::string& pg_url, std::size_t limit) {
  pqxx::connection conn{pg_url};
  pqxx::read_transaction tx{conn};
  auto rows = limit ? tx.exec_params(product_ids_limit_sql, static_cast<std::int64_t>(limit))
                    : tx.exec(product_ids_sql);
  std::vector<std::string> ids;
  ids.reserve(rows.size());
  for (const auto& r : rows)
    ids.push_back(r[0].as<std::string>());
  return ids;
}

snapshot take_snapshot(const std::string& pg_url, const std::vector<std::string>& product_ids) {
  pqxx::connection conn{pg_url};
  pqxx::read_transaction tx{conn};
  snapshot s;
  s.started_at = tx.exec(clock_sql)[0][0].as<std::string>();
  for (const auto& r : tx.exec_params(stock_sql, text_array(product_ids)))
    s.stock[r[0].as<std::string>()] = r[1].as<std::int64_t>();
  return s;
}

verdict verify(const std::string& pg_url, const snapshot& before,
               const std::vector<acknowledged_order>& acks,
               const std::vector<std::string>& customer_ids, std::uint64_t ambiguous) {
  verdict v;
  v.acknowledged = acks.size();
  pqxx::connection conn{pg_url};
  // One snapshot of the database for every check.
  pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{conn};

  // 1. Every acknowledged order exists exactly once, for the customer it was placed for, with
  //    the lines it was acknowledged with. No id was acknowledged twice.
  std::map<std::string, const acknowledged_order*> by_id;
  std::vector<std::string> ack_ids;
  for (const auto& a : acks) {
    if (!by_id.emplace(a.order_id, &a).second)
      add_failure(v, "order " + a.order_id + " was acknowledged twice (two checkouts, one order)");
    ack_ids.push_back(a.order_id);
  }
  std::set<std::string> seen;
  for (const auto& r : tx.exec_params(acked_orders_sql, text_array(ack_ids))) {
    auto id = r[0].as<std::string>();
    auto copies = r[3].as<std::int64_t>();
    if (!seen.insert(id).second)
      continue;
    if (copies != 1) {
      add_failure(v, "order " + id + " is stored " + std::to_string(copies) + " times");
      continue;
    }
    auto it = by_id.find(id);
    if (it != by_id.end() && !it->second->customer_id.empty()
        && it->second->customer_id != r[1].as<std::string>())
      add_failure(v, "order " + id + " belongs to " + r[1].as<std::string>() + ", placed by "
                       + it->second->customer_id);
    ++v.found_once;
    if (r[2].as<std::string>() == "cancelled")
      v.cancelled.push_back(id);
  }
  for (const auto& id : ack_ids)
    if (!seen.count(id))
      add_failure(v, "acknowledged order " + id + " is not in the database (lost write)");

  std::map<std::string, std::map<std::string, std::int64_t>> stored_lines;
  for (const auto& r : tx.exec_params(acked_lines_sql, text_array(ack_ids)))
    stored_lines[r[0].as<std::string>()][r[1].as<std::string>()] = r[2].as<std::int64_t>();
  for (const auto& a : acks) {
    if (!seen.count(a.order_id) || a.lines.empty())
      continue;
    std::map<std::string, std::int64_t> want;
    for (const auto& [pid, q] : a.lines)
      want[pid] += q;
    if (stored_lines[a.order_id] != want)
      add_failure(v, "order " + a.order_id + " has other lines in the database than acknowledged");
  }

  // 2. Orders committed but never acknowledged: only a checkout whose outcome the client could
  //    not know (timeout, reset, 5xx) may have left one behind.
  auto customers = text_array(customer_ids);
  std::string examples;
  for (const auto& r : tx.exec_params(run_orders_sql, customers, before.started_at)) {
    auto id = r[0].as<std::string>();
    if (by_id.count(id))
      continue;
    if (++v.unacknowledged_committed <= 5)
      examples += (examples.empty() ? "" : ", ") + id + " (" + r[1].as<std::string>() + ")";
  }
  if (v.unacknowledged_committed > ambiguous)
    add_failure(v, std::to_string(v.unacknowledged_committed)
                     + " orders were committed but never acknowledged, while only "
                     + std::to_string(ambiguous) + " checkouts ended without a known outcome; e.g. "
                     + examples);

  // 3. Stock before == stock now + units held by this run's orders, for every product.
  std::map<std::string, std::int64_t> units;
  for (const auto& r : tx.exec_params(run_units_sql, customers, before.started_at)) {
    auto pid = r[0].as<std::string>();
    auto q = r[1].as<std::int64_t>();
    units[pid] = q;
    v.units_ordered += q;
    if (!before.stock.count(pid))
      add_failure(v, "product " + pid + " was ordered but not snapshotted before the run");
  }
  std::vector<std::string> pids;
  for (const auto& [pid, s] : before.stock)
    pids.push_back(pid);
  std::map<std::string, std::int64_t> now;
  for (const auto& r : tx.exec_params(stock_sql, text_array(pids)))
    now[r[0].as<std::string>()] = r[1].as<std::int64_t>();
  v.stock_after = now;
  for (const auto& [pid, start] : before.stock) {
    ++v.products_checked;
    auto n = now.find(pid);
    if (n == now.end()) {
      ++v.products_mismatched;
      add_failure(v, "product " + pid + " disappeared");
      continue;
    }
    auto held = units.count(pid) ? units[pid] : 0;
    if (n->second + held != start) {
      ++v.products_mismatched;
      add_failure(v, "product " + pid + ": stock " + std::to_string(n->second) + " + ordered "
                       + std::to_string(held) + " != starting stock " + std::to_string(start));
    }
  }

  // 4. No stock below zero anywhere.
  v.negative_stock = tx.exec(negative_stock_count_sql)[0][0].as<std::uint64_t>();
  if (v.negative_stock)
    for (const auto& r : tx.exec(negative_stock_sql))
      add_failure(
        v, "product " + r[0].as<std::string>() + " has stock " + r[1].as<std::string>() + " < 0");
  return v;
}

} // namespace emporium::bench::accounting
