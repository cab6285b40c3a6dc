#pragma once
/// Correctness accounting for write scenarios, straight from PostgreSQL (libpqxx): a benchmark
/// that loses or duplicates data reports failure, whatever its speed.
///
///   before: the stock of every product the run may order, and the database's clock;
///   during: every acknowledged (201) order: its id, customer and lines as the answer gave them;
///   after:  each acknowledged order exists exactly once, with those lines; for every product,
///           stock now + quantities of this run's non-cancelled orders == stock before; no
///           product has stock < 0; orders that were committed but never acknowledged are
///           counted (allowed only up to the number of checkouts whose outcome the client could
///           not know: timeouts, resets, 5xx).
///
/// All SQL lives as named constants at the top of accounting.cpp.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace emporium::bench::accounting {

/// Product ids of the catalog in id order (at most `limit`, 0 = all).
std::vector<std::string> load_product_ids(const std::string& pg_url, std::size_t limit);

struct snapshot {
  std::string started_at;                    ///< the database's now() when taken (timestamptz text)
  std::map<std::string, std::int64_t> stock; ///< product id → stock
};

/// Reads the stock of `product_ids` and the database clock.
snapshot take_snapshot(const std::string& pg_url, const std::vector<std::string>& product_ids);

struct acknowledged_order {
  std::string order_id;
  std::string customer_id;
  std::vector<std::pair<std::string, std::int64_t>> lines; ///< product id, quantity
};

struct verdict {
  bool passed = true;
  std::vector<std::string> failures; ///< one line each, at most a few dozen
  std::uint64_t acknowledged = 0;
  std::uint64_t found_once = 0;
  std::uint64_t unacknowledged_committed = 0;
  std::uint64_t products_checked = 0;
  std::uint64_t products_mismatched = 0;
  std::uint64_t negative_stock = 0;
  std::int64_t units_ordered = 0;                  ///< by this run's non-cancelled orders
  std::map<std::string, std::int64_t> stock_after; ///< of the snapshotted products, at the check
  std::vector<std::string> cancelled;              ///< acknowledged orders now cancelled
};

/// Checks the invariants above. `customer_ids` are the customers this run used; `ambiguous` is
/// how many checkouts ended without a known outcome.
verdict verify(const std::string& pg_url, const snapshot& before,
               const std::vector<acknowledged_order>& acks,
               const std::vector<std::string>& customer_ids, std::uint64_t ambiguous);

/// A PostgreSQL text[] literal of `items` ({"a","b"}), quoted safely.
std::string text_array(const std::vector<std::string>& items);

} // namespace emporium::bench::accounting
