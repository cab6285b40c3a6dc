#pragma once
/// The scenarios of emporium-bench, written against the HTTP API (docs/api.md):
///   get          one fixed path (--path): the wrk cross-check and static ceilings
///   product-get  GET /products/{id}, ids uniform or Zipf-skewed over the catalog
///   browse       list pages (sometimes by category, following cursors) and product pages
///   search       a realistic mix of GET /search queries
///   checkout     customers fill a cart, check out, pay (set-up: register, log in)
///   mix          Online Boutique ratios browse 10 : view cart 3 : add to cart 2 : index 1 :
///                checkout 1, by many simulated customers
///   stock-patch  admin PATCHes of the stock of the first --products catalog ids (each a change,
///                so an event of the product's feed)
///   hot-sku      checkout's flow with every order for ONE product, one unit each (contention on
///                one product; with limited stock, the sell-out and its refusals)
/// (subscribe, the feeds' fan-out, runs its own engine: feeds.hpp.)
/// checkout, mix and hot-sku record every acknowledged order for the accounting (accounting.hpp).

#include "bench/accounting.hpp"
#include "bench/load.hpp"
#include "bench/zipf.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

namespace emporium::bench {

/// Product ids to read, and how to pick them.
class catalog {
 public:
  catalog(std::vector<std::string> ids, double zipf_exponent, std::uint64_t seed);
  const std::string& pick(std::mt19937_64& rng) const;
  std::size_t size() const { return ids_.size(); }
  const std::vector<std::string>& ids() const { return ids_; }

 private:
  std::vector<std::string> ids_;
  std::unique_ptr<zipf_distribution> zipf_;
  std::vector<std::uint32_t> rank_to_index_; ///< the hot ranks are spread over the catalog
};

/// Product ids of a GET /products paging (at most `limit`, 0 = all). Throws on failure.
std::vector<std::string> load_ids_http(const target& where, std::size_t limit);

/// A registered customer and their open cart.
struct customer {
  std::string email;
  std::string password;
  std::string id;
  std::string token;
  std::string cart_id;
  std::vector<std::pair<std::string, std::int64_t>> cart; ///< client's view of the open cart
  int login_attempts = 0;
  int retries = 0; ///< set-up steps retried after 429/503/504
  bool failed = false;
};

/// What checkout and mix share between connections (and threads).
struct commerce_state {
  std::mutex mu;
  std::vector<customer> customers;
  std::size_t next_setup = 0;
  std::vector<std::size_t> free;    ///< customers ready and not in use
  std::vector<std::string> stocked; ///< products with stock > 0 before the run
  std::vector<accounting::acknowledged_order> acks;
  std::uint64_t acks_measured = 0; ///< acknowledged inside the measured window
  std::uint64_t out_of_stock = 0;  ///< 409 answers (short of stock)
  std::uint64_t unshippable = 0;   ///< 422 answers (no shipping zone takes the parcel)
  std::uint64_t ambiguous = 0;     ///< checkouts without a known outcome
  std::uint64_t checkout_409 = 0;  ///< checkouts refused 409 (cart lines refused not included)
  /// 201 answers that arrived after the first checkout refused 409. Not an error by itself: an
  /// order granted the last unit may be answered after a later one was refused.
  std::uint64_t acks_after_first_409 = 0;
  std::uint64_t payments_ok = 0;
  std::uint64_t payments_failed = 0;
  std::uint64_t setup_failed_customers = 0;
  std::map<std::string, std::string> setup_errors; ///< "POST /sessions 429" → a body
  std::string unavailable;                         ///< set when an endpoint answered 404/405
  std::string run_id;
  std::size_t accounts = 0; ///< customers[0..accounts) are registered accounts
  std::uint64_t keys = 0;   ///< idempotency keys issued

  /// Loads customers saved by save_customers (ignores a missing file).
  void load_customers(const std::string& file);
  void save_customers(const std::string& file) const;
  std::vector<std::string> customer_ids() const;
};

struct scenario_options {
  std::string name;
  std::string path = "/";    ///< get
  std::size_t customers = 0; ///< checkout, mix: simulated customers (≥ connections)
  int max_lines = 3;         ///< checkout: distinct products per order, 1..max_lines
  std::int64_t quantity = 0; ///< checkout, hot-sku: units per line (0: 1 or 2 at random)
  bool once = false;         ///< product-get: every id once, then stop (closed loop)
  std::size_t products = 1;  ///< stock-patch: the first N catalog ids are changed, in turn
  std::string admin_key;     ///< stock-patch
};

/// Registers and logs in customers[0..accounts) (`parallel` blocking sign-ups at a time: they
/// hash passwords, deliberately slowly, and too many at once queue past the server's request
/// deadline); every further simulated customer shares account i % accounts, with its own cart.
/// Failures are in s.setup_errors; customers of a failed account are marked failed.
void prepare_accounts(commerce_state& s, const target& where, std::size_t accounts,
                      std::size_t parallel);

/// Names accepted by make_scenario.
const std::vector<std::string>& scenario_names();

/// `inner`, stopped after `max_requests` requests in all connections (set-up not counted,
/// warm-up counted): a fixed amount of work, for profiling under a slow instrumenting profiler.
std::unique_ptr<scenario> cap_requests(std::unique_ptr<scenario> inner, std::uint64_t max_requests);

/// `cat` may be null for get and hot-sku; `shop` must be set for checkout, mix and hot-sku.
std::unique_ptr<scenario> make_scenario(const scenario_options& o, const catalog* cat,
                                        commerce_state* shop);

} // namespace emporium::bench
