// emporium-bench: the load generator. See bench/README.md.
//
//   emporium-bench --target URL --scenario NAME --connections N --duration SECONDS
//                  [--rate R] [--json FILE|-] ...
//
// Exit status: 0 done; 1 a correctness check failed or the run could not be done;
// 2 bad command line; 3 the scenario's endpoints are not available on the target.

#include "bench/accounting.hpp"
#include "bench/db_work.hpp"
#include "bench/feeds.hpp"
#include "bench/hotsku.hpp"
#include "bench/idlist.hpp"
#include "bench/load.hpp"
#include "bench/procstat.hpp"
#include "bench/scenarios.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

namespace {

using namespace emporium::bench;
using json = nlohmann::json;

constexpr int exit_failed = 1;
constexpr int exit_unavailable = 3;

struct options {
  std::string target_url;
  std::string scenario = "product-get";
  int connections = 64;
  double duration = 10;
  double rate = 0;
  std::string json_file;
  int threads = 1;
  double warmup = 0;
  double timeout = 10;
  double zipf = 0;
  std::string path = "/";
  std::string pg_url;
  bool ids_from_pg = false;
  std::string ids_from;
  std::string ids_file;
  std::size_t ids_limit = 0;
  std::size_t customers = 0;
  std::string customers_file;
  std::size_t write_products = 10'000;
  int max_lines = 3;
  bool no_verify = false;
  std::uint64_t seed = 0;
  std::string label;
  bool once = false;
  std::size_t setup_parallel = 8;
  std::size_t accounts = 64;
  bool accounts_given = false;
  std::int64_t hot_stock = 100'000'000;
  std::string hot_product;
  bool expect_sellout = false;
  std::int64_t quantity = 0;
  std::uint64_t max_requests = 0;
  std::vector<int> server_pids;
  std::vector<int> db_pids;
  std::string admin_key;
  std::size_t products = 1;
  int changes = 20;
  double interval_ms = 300;
  int connect_parallel = 256;
  bool stalled_subscriber = false;
  std::string timeline_file;
};

double ms(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

json latency_json(const histogram& h) {
  return {{"p50", ms(h.value_at_percentile(50))},
          {"p90", ms(h.value_at_percentile(90))},
          {"p99", ms(h.value_at_percentile(99))},
          {"p999", ms(h.value_at_percentile(99.9))},
          {"max", ms(h.max())},
          {"min", ms(h.min())},
          {"mean", h.mean() / 1e6}};
}

json status_json(const std::map<int, std::uint64_t>& by_status) {
  json j = json::object();
  for (auto& [s, c] : by_status)
    j[std::to_string(s)] = c;
  return j;
}

json kind_json(const std::array<std::uint64_t, 4>& by_kind) {
  json j = json::object();
  for (std::size_t i = 0; i < by_kind.size(); ++i)
    j[error_kind_names[i]] = by_kind[i];
  return j;
}

/// One line per second of the window and request kind (then "all"): answers that came in that
/// second, their p50/p99/max latency and the failures, with the second's wall-clock time so it
/// lines up with server and database logs.
void write_timeline(const std::string& file, const run_stats& st) {
  std::ofstream out{file};
  if (!out)
    throw std::runtime_error("cannot write " + file);
  out << "t_s\tunix_s\top\tanswers\tp50_ms\tp99_ms\tmax_ms\terrors\n";
  std::map<std::int64_t, timeline_cell> all;
  auto line = [&](std::int64_t t, const std::string& op, const timeline_cell& c) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%lld\t%.0f\t%s\t%llu\t%.2f\t%.2f\t%.2f\t%llu\n",
                  static_cast<long long>(t), st.window_start_unix_s + static_cast<double>(t),
                  op.c_str(), static_cast<unsigned long long>(c.latency.count()),
                  ms(c.latency.value_at_percentile(50)), ms(c.latency.value_at_percentile(99)),
                  ms(c.latency.max()), static_cast<unsigned long long>(c.errors));
    out << buf;
  };
  for (auto& [key, c] : st.timeline) {
    auto& [t, op] = key;
    line(t, st.op_names.at(static_cast<std::size_t>(op)), c);
    all[t].latency.merge(c.latency);
    all[t].errors += c.errors;
  }
  if (st.op_names.size() > 1)
    for (auto& [t, c] : all)
      line(t, "all", c);
}

std::string random_run_id() {
  std::random_device rd;
  std::ostringstream out;
  out << std::hex << std::chrono::system_clock::now().time_since_epoch().count() % 0xffffffffff
      << rd() % 0xffff;
  return out.str();
}

void emit(const options& o, const json& result) {
  auto text = result.dump(2);
  if (o.json_file == "-") {
    std::cout << text << "\n";
  } else if (!o.json_file.empty()) {
    std::ofstream out{o.json_file, std::ios::trunc};
    out << text << "\n";
    if (!out)
      std::cerr << "emporium-bench: could not write " << o.json_file << "\n";
  }
}

/// Human summary, on stderr when the JSON goes to stdout.
void summarize(std::ostream& out, const json& r) {
  char line[512];
  out << "scenario " << r["scenario"].get<std::string>() << " on " << r["target"].get<std::string>()
      << ": " << r["connections"] << " connections, " << r["mode"].get<std::string>() << " loop";
  if (r["mode"] == "open")
    out << " at " << r["rate"] << " req/s";
  out << ", " << r["duration_s"] << " s\n";
  if (!r.value("available", true)) {
    out << "  NOT AVAILABLE: " << r["unavailable_reason"].get<std::string>() << "\n";
    return;
  }
  const auto& l = r["latency_ms"];
  std::snprintf(line, sizeof line,
                "  %.0f req/s (%.0f ok/s), %llu answered, %llu errors\n"
                "  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
                r["requests_per_second"].get<double>(), r["ok_per_second"].get<double>(),
                static_cast<unsigned long long>(r["requests"].get<std::uint64_t>()),
                static_cast<unsigned long long>(r["errors"]["total"].get<std::uint64_t>()),
                l["p50"].get<double>(), l["p90"].get<double>(), l["p99"].get<double>(),
                l["p999"].get<double>(), l["max"].get<double>());
  out << line;
  if (r["errors"]["total"].get<std::uint64_t>() > 0)
    out << "  errors by status " << r["errors"]["by_status"].dump() << ", by kind "
        << r["errors"]["by_kind"].dump() << "\n";
  if (r["operations"].size() > 1)
    for (auto& [name, op] : r["operations"].items()) {
      std::snprintf(line, sizeof line,
                    "    %-12s %8llu answered  p50 %8.3f  p99 %8.3f ms  errors %s\n", name.c_str(),
                    static_cast<unsigned long long>(op["requests"].get<std::uint64_t>()),
                    op["latency_ms"]["p50"].get<double>(), op["latency_ms"]["p99"].get<double>(),
                    op["errors"].dump().c_str());
      out << line;
    }
  if (r.contains("server")) {
    const auto& sv = r["server"];
    std::snprintf(line, sizeof line,
                  "  server: %.3f CPU s per 1,000 requests (%.2f cores), peak RSS %.1f MiB\n",
                  sv["cpu_s_per_1k"].get<double>(), sv["cpu_cores"].get<double>(),
                  static_cast<double>(sv["vm_hwm_kib"].get<std::int64_t>()) / 1024.0);
    out << line;
  }
  if (r.contains("db")) {
    std::snprintf(line, sizeof line, "  PostgreSQL + Redis: %.3f CPU s per 1,000 requests\n",
                  r["db"]["cpu_s_per_1k"].get<double>());
    out << line;
  }
  if (r.contains("orders")) {
    const auto& o = r["orders"];
    std::snprintf(line, sizeof line,
                  "  orders: %llu acknowledged (%.1f/s in the window), refused: %llu short of "
                  "stock, %llu unshippable; %llu paid, %llu unknown outcome; set-up %.1f s\n",
                  static_cast<unsigned long long>(o["acknowledged"].get<std::uint64_t>()),
                  o["per_second"].get<double>(),
                  static_cast<unsigned long long>(o["out_of_stock"].get<std::uint64_t>()),
                  static_cast<unsigned long long>(o["unshippable"].get<std::uint64_t>()),
                  static_cast<unsigned long long>(o["paid"].get<std::uint64_t>()),
                  static_cast<unsigned long long>(o["ambiguous"].get<std::uint64_t>()),
                  r["setup"]["seconds"].get<double>());
    out << line;
  }
  if (r.contains("accounting")) {
    const auto& a = r["accounting"];
    if (!a.value("checked", false)) {
      out << "  accounting: NOT CHECKED (" << a.value("reason", std::string{}) << ")\n";
    } else {
      out << "  accounting: " << (a["passed"].get<bool>() ? "PASSED" : "FAILED") << " ("
          << a["found_once"] << "/" << a["acknowledged"] << " acknowledged orders found once, "
          << a["products_checked"] << " products balanced with " << a["products_mismatched"]
          << " mismatches, " << a["unacknowledged_committed"] << " committed but unacknowledged, "
          << a["negative_stock"] << " negative stock)\n";
      for (auto& f : a["failures"])
        out << "    " << f.get<std::string>() << "\n";
    }
  }
  if (r.contains("hot_sku")) {
    const auto& h = r["hot_sku"];
    out << "  hot product " << h["product_id"].get<std::string>() << ": stock " << h["stock_before"]
        << " -> " << h["stock_after"] << ", " << h["units_acknowledged"] << " units acknowledged ("
        << h["units_acknowledged_not_cancelled"] << " not cancelled), " << h["checkout_409"]
        << " checkouts refused 409 (" << h["acks_after_first_409"]
        << " 201s answered after the first), "
        << (h["sold_out"].get<bool>() ? "sold out" : "not sold out") << ": "
        << (h["passed"].get<bool>() ? "PASSED" : "FAILED") << "\n";
    for (auto& f : h["failures"])
      out << "    " << f.get<std::string>() << "\n";
  }
  if (r.contains("stalled_subscriber")) {
    const auto& st = r["stalled_subscriber"];
    out << "  stalled subscriber (" << st["topic"].get<std::string>() << ", SO_RCVBUF "
        << st["rcvbuf_bytes"] << " bytes): "
        << (st["dropped"].get<bool>() ? "dropped by the server, close 1013"
            : st["closed_by_server"].get<bool>()
              ? "closed by the server, code " + st["close_code"].dump()
              : std::string{"NOT closed by the server"})
        << "; emporium_feed_dropped_total " << st["dropped_total_before"] << " -> "
        << st["dropped_total_after"] << "\n";
  }
  if (r.contains("unfinished") && r["unfinished"].get<std::uint64_t>() > 0)
    out << "  open loop: " << r["unfinished"] << " requests due in the window were unanswered at "
        << "its end (queued peak " << r["backlog_peak"] << ")\n";
}

/// The scenario's endpoints exist on the target? Empty when yes, else why not.
std::string probe(const target& where, const std::string& scenario) {
  auto missing = [](int status) { return status == 404 || status == 405 || status == 501; };
  if (scenario == "search") {
    auto r = fetch(where, "GET", "/search?q=kettle&limit=1", {}, {}, 10);
    if (r.status == 0)
      return "GET /search: " + r.error;
    if (missing(r.status))
      return "GET /search answered " + std::to_string(r.status)
             + " (this server does not serve the search endpoint)";
  }
  if (scenario == "checkout" || scenario == "mix" || scenario == "hot-sku") {
    // An empty body: 400 where the endpoint exists, and nothing is created.
    for (const char* path : {"/customers", "/sessions"}) {
      auto r = fetch(where, "POST", path, "{}", {}, 10);
      if (r.status == 0)
        return std::string{"POST "} + path + ": " + r.error;
      if (missing(r.status))
        return std::string{"POST "} + path + " answered " + std::to_string(r.status)
               + " (this server does not serve the commerce endpoints)";
    }
  }
  return {};
}

/// Human summary of a subscribe run.
void summarize_subscribe(std::ostream& out, const json& r) {
  char line[512];
  const auto& d = r["deliveries"];
  const auto& l = r["fanout_latency_ms"];
  out << "scenario subscribe on " << r["target"].get<std::string>() << ": " << r["subscribers"]
      << " WebSocket subscribers of " << r["products"] << " product(s), " << r["changes"]["asked"]
      << " stock changes " << r["changes"]["interval_ms"] << " ms apart\n";
  std::snprintf(line, sizeof line,
                "  subscribed %lld (failed %lld) in %.1f s\n"
                "  deliveries: %lld expected, %lld received, %lld missing, %lld seq gaps, "
                "%lld subscribers dropped\n"
                "  fan-out latency ms (PATCH sent -> event received): p50 %.3f  p99 %.3f  "
                "max %.3f\n",
                r["subscribed"].get<long long>(), r["subscribe_failed"].get<long long>(),
                r["subscribe_seconds"].get<double>(), d["expected"].get<long long>(),
                d["received"].get<long long>(), d["missing"].get<long long>(),
                d["seq_gaps"].get<long long>(), d["subscribers_dropped"].get<long long>(),
                l["p50"].get<double>(), l["p99"].get<double>(), l["max"].get<double>());
  out << line;
  if (!r["failures"].empty())
    out << "  failures " << r["failures"].dump() << ": " << r.value("failure_sample", "") << "\n";
  if (r["changes"].contains("error_sample"))
    out << "  stock changes " << r["changes"]["by_status"].dump() << ": "
        << r["changes"]["error_sample"].get<std::string>() << "\n";
  if (r.contains("server")) {
    const auto& sv = r["server"];
    std::snprintf(line, sizeof line,
                  "  server RSS: %.1f MiB before, %.1f MiB subscribed: %.0f bytes per subscriber\n",
                  sv["vm_rss_kib_before"].get<double>() / 1024.0,
                  sv["vm_rss_kib_subscribed"].get<double>() / 1024.0,
                  sv["bytes_per_subscriber"].get<double>());
    out << line;
  }
  out << (r["passed"].get<bool>() ? "  passed\n" : "  FAILED\n");
}

json base_result(const options& o) {
  return {{"label", o.label.empty() ? o.scenario : o.label},
          {"scenario", o.scenario},
          {"target", o.target_url},
          {"connections", o.connections},
          {"threads", o.threads},
          {"mode", o.rate > 0 ? "open" : "closed"},
          {"rate", o.rate},
          {"duration_s", o.duration},
          {"warmup_s", o.warmup},
          {"zipf", o.zipf}};
}

/// The product ids of --ids-file, --ids-from-pg or GET /products paging.
std::vector<std::string> load_ids(const options& o, const target& where, std::size_t limit) {
  if (!o.ids_file.empty()) {
    if (o.ids_from_pg || !o.ids_from.empty())
      throw std::invalid_argument("--ids-file excludes --ids-from-pg and --ids-from");
    auto ids = load_id_file(o.ids_file);
    if (limit && ids.size() > limit)
      ids.resize(limit);
    return ids;
  }
  if (o.ids_from_pg) {
    if (o.pg_url.empty())
      throw std::invalid_argument("--ids-from-pg needs --pg-url");
    return accounting::load_product_ids(o.pg_url, limit);
  }
  return load_ids_http(o.ids_from.empty() ? where : parse_target(o.ids_from), limit);
}

/// --scenario subscribe: the feeds' fan-out (feeds.hpp), its own engine.
int run_subscribe_scenario(const options& o, const target& where, json result) {
  feeds::subscribe_options so;
  so.where = where;
  so.product_ids = load_ids(o, where, o.products);
  if (so.product_ids.size() < o.products)
    throw std::runtime_error("subscribe: only " + std::to_string(so.product_ids.size())
                             + " products, --products " + std::to_string(o.products));
  so.subscribers = o.connections;
  so.changes = o.changes;
  so.interval_ms = o.interval_ms;
  so.threads = o.threads;
  so.connect_parallel = o.connect_parallel;
  so.timeout_s = o.timeout;
  so.admin_key = o.admin_key;
  so.server_pid = o.server_pids.empty() ? 0 : o.server_pids.front();
  auto r = feeds::run_subscribe(so);
  result.update(r);
  if (r["subscribed"].get<std::int64_t>() == 0 && r["subscribe_failed"].get<std::int64_t>() > 0) {
    result["available"] = false;
    result["unavailable_reason"] = "no subscription was acknowledged: "
                                   + r.value("failure_sample", std::string{});
    summarize(std::cerr, result);
    emit(o, result);
    return exit_unavailable;
  }
  summarize_subscribe(std::cerr, result);
  emit(o, result);
  return result["passed"].get<bool>() ? 0 : exit_failed;
}

/// hot-sku: a product of its own for the run (admin POST /products) with `o.hot_stock` units,
/// or the existing `o.hot_product`. Returns its id; empty with `why` set when the server has no
/// such endpoint.
std::string hot_product(const options& o, const target& where, const std::string& run_id,
                        std::string& why) {
  if (!o.hot_product.empty())
    return o.hot_product;
  if (o.admin_key.empty())
    throw std::invalid_argument(
      "scenario hot-sku creates its product: give --admin-key (or EMPORIUM_ADMIN_KEY), or "
      "--hot-product ID");
  json body = {{"sku", "HOT-" + run_id},
               {"name", "Hot product " + run_id},
               {"description", "One product every connection of a hot-sku run orders"},
               {"price_cents", 1999},
               {"currency", "USD"},
               {"category", "bench"},
               {"stock", o.hot_stock},
               {"weight_grams", 500}};
  auto r = fetch(where, "POST", "/products", body.dump(), o.admin_key, 30);
  if (r.status == 404 || r.status == 405 || r.status == 501) {
    why = "POST /products answered " + std::to_string(r.status);
    return {};
  }
  auto j = json::parse(r.body, nullptr, false);
  if (r.status != 201 || !j.is_object() || !j.contains("id") || !j["id"].is_string())
    throw std::runtime_error(
      "hot-sku: POST /products answered "
      + (r.status ? std::to_string(r.status) + " " + r.body.substr(0, 200) : r.error));
  return j["id"].get<std::string>();
}

/// The hot-sku checks beyond the accounting (hotsku.hpp), as JSON.
json hot_sku_verdict(const options& o, const commerce_state& shop, const std::string& pid,
                     std::int64_t stock_before, std::int64_t stock_after,
                     const std::vector<std::string>& cancelled) {
  sellout_input in;
  in.product_id = pid;
  in.quantity = o.quantity > 0 ? o.quantity : 1;
  in.stock_before = stock_before;
  in.stock_after = stock_after;
  in.checkout_409 = shop.checkout_409;
  in.expect_sellout = o.expect_sellout;
  auto v = check_sellout(in, shop.acks, cancelled);
  return {{"product_id", pid},
          {"stock_before", stock_before},
          {"stock_after", stock_after},
          {"units_acknowledged", v.units_acknowledged},
          {"units_acknowledged_not_cancelled", v.units_acknowledged_not_cancelled},
          {"orders_acknowledged", shop.acks.size()},
          {"checkout_409", shop.checkout_409},
          {"acks_after_first_409", shop.acks_after_first_409},
          {"sold_out", v.sold_out},
          {"expect_sellout", o.expect_sellout},
          {"failures", v.failures},
          {"passed", v.passed}};
}

int run(const options& o) {
  auto where = parse_target(o.target_url);
  auto result = base_result(o);

  if (auto why = probe(where, o.scenario); !why.empty()) {
    result["available"] = false;
    result["unavailable_reason"] = why;
    summarize(std::cerr, result);
    emit(o, result);
    return exit_unavailable;
  }
  result["available"] = true;

  if (o.scenario == "subscribe")
    return run_subscribe_scenario(o, where, result);

  bool hot = o.scenario == "hot-sku";
  bool writes = o.scenario == "checkout" || o.scenario == "mix" || hot;
  std::unique_ptr<catalog> cat;
  if (o.scenario != "get" && !hot) {
    auto ids = load_ids(o, where, o.ids_limit);
    std::cerr << "catalog: " << ids.size() << " product ids"
              << (o.zipf > 0 ? ", Zipf exponent " + std::to_string(o.zipf) : ", uniform") << "\n";
    cat = std::make_unique<catalog>(std::move(ids), o.zipf, o.seed + 17);
  }

  std::unique_ptr<commerce_state> shop;
  double accounts_s = 0;
  accounting::snapshot before;
  std::string hot_id;
  std::int64_t hot_stock_before = 0;
  bool verify = writes && !o.no_verify;
  if (writes) {
    if (verify && o.pg_url.empty())
      throw std::invalid_argument("scenario " + o.scenario +
                                  " verifies its orders in PostgreSQL: give --pg-url (or "
                                  "--no-verify to skip the check)");
    shop = std::make_unique<commerce_state>();
    shop->run_id = random_run_id();
    if (!o.customers_file.empty())
      shop->load_customers(o.customers_file);
    std::size_t wanted = std::max<std::size_t>(
      o.customers ? o.customers : (o.scenario == "mix" ? 2'000 : 0),
      static_cast<std::size_t>(o.connections));
    for (std::size_t i = shop->customers.size(); i < wanted; ++i) {
      customer c;
      c.email = "bench-" + shop->run_id + "-" + std::to_string(i) + "@example.com";
      c.password = "bench-pw-" + shop->run_id + "-" + std::to_string(i);
      shop->customers.push_back(std::move(c));
    }
    auto t0 = std::chrono::steady_clock::now();
    // hot-sku: one account per simulated customer (one per connection) unless told otherwise.
    prepare_accounts(*shop, where, hot && !o.accounts_given ? shop->customers.size() : o.accounts,
                     o.setup_parallel);
    accounts_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!shop->unavailable.empty()) {
      result["available"] = false;
      result["unavailable_reason"] = shop->unavailable;
      summarize(std::cerr, result);
      emit(o, result);
      return exit_unavailable;
    }
    std::cerr << shop->customers.size() << " simulated customers on " << shop->accounts
              << " accounts (signed up / logged in in " << accounts_s << " s)\n";
    // The products orders may take: a random sample of the catalog, their stock snapshotted;
    // hot-sku: its one product.
    std::vector<std::string> sample;
    if (hot) {
      std::string why;
      hot_id = hot_product(o, where, shop->run_id, why);
      if (hot_id.empty()) {
        result["available"] = false;
        result["unavailable_reason"] = why;
        summarize(std::cerr, result);
        emit(o, result);
        return exit_unavailable;
      }
      sample.push_back(hot_id);
      hot_stock_before = o.hot_product.empty() ? o.hot_stock : 0;
      std::cerr << "hot product " << hot_id << "\n";
    } else {
      sample = cat->ids();
      std::mt19937_64 rng{o.seed + 23};
      std::shuffle(sample.begin(), sample.end(), rng);
      if (o.write_products && sample.size() > o.write_products)
        sample.resize(o.write_products);
    }
    if (!o.pg_url.empty()) {
      before = accounting::take_snapshot(o.pg_url, sample);
      for (auto& [pid, stock] : before.stock)
        if (stock > 0)
          shop->stocked.push_back(pid);
      if (hot)
        hot_stock_before = before.stock.count(hot_id) ? before.stock[hot_id] : 0;
    } else {
      shop->stocked = sample;
    }
    if (shop->stocked.empty())
      throw std::runtime_error("no product with stock among the " + std::to_string(sample.size())
                               + " sampled");
    std::cerr << "orders draw from " << shop->stocked.size() << " products in stock; "
              << shop->customers.size() << " customers\n";
  }

  scenario_options so;
  so.name = o.scenario;
  so.path = o.path;
  so.customers = o.customers;
  so.max_lines = o.max_lines;
  so.once = o.once;
  so.products = o.products;
  so.admin_key = o.admin_key;
  so.quantity = o.quantity;
  auto sc = make_scenario(so, cat.get(), shop.get());
  if (o.max_requests)
    sc = cap_requests(std::move(sc), o.max_requests);

  engine_options eo;
  eo.where = where;
  eo.connections = o.connections;
  eo.threads = o.threads;
  eo.rate = o.rate;
  eo.duration_s = o.duration;
  eo.warmup_s = o.warmup;
  eo.timeout_s = o.timeout;
  eo.seed = o.seed;
  eo.timeline = !o.timeline_file.empty();

  run_hooks hooks;
  // CPU of the server (and of PostgreSQL/Redis) over exactly the measured window.
  // Several --server-pid (the nodes of a cluster): each one's CPU, summed in the result.
  std::vector<double> server_cpu0(o.server_pids.size()), server_cpu1(o.server_pids.size());
  double db_cpu0 = 0, db_cpu1 = 0;
  // This generator's own CPU over the window: on a machine it shares with the server and the
  // database, what it takes is not theirs (the figures per order then add up to the cores).
  double generator_cpu0 = 0, generator_cpu1 = 0;
  auto server_cpu = [&o](std::vector<double>& into) {
    for (std::size_t i = 0; i < o.server_pids.size(); ++i)
      into[i] = procstat::tree_cpu_seconds(o.server_pids[i]);
  };
  auto db_cpu = [&o] {
    double sum = 0;
    for (int pid : o.db_pids)
      sum += std::max(0.0, procstat::tree_cpu_seconds(pid));
    return sum;
  };
  // With the database measured (--db-pid) and known (--pg-url): what it wrote in the window.
  std::unique_ptr<db_counter_reader> db_reader;
  std::optional<db_counters> db_counters0, db_counters1;
  if (!o.db_pids.empty() && !o.pg_url.empty()) {
    try {
      db_reader = std::make_unique<db_counter_reader>(o.pg_url);
    } catch (const std::exception& e) {
      std::cerr << "warning: the database's write counters cannot be read: " << e.what() << '\n';
    }
  }
  auto read_db_counters = [&db_reader](std::optional<db_counters>& into) {
    if (!db_reader)
      return;
    try {
      into = db_reader->read();
    } catch (const std::exception& e) {
      std::cerr << "warning: the database's write counters cannot be read: " << e.what() << '\n';
    }
  };
  if (!o.server_pids.empty() || !o.db_pids.empty()) {
    hooks.window_start = [&] {
      generator_cpu0 = procstat::tree_cpu_seconds(static_cast<int>(::getpid()));
      server_cpu(server_cpu0);
      db_cpu0 = db_cpu();
      read_db_counters(db_counters0);
    };
    hooks.window_end = [&] {
      generator_cpu1 = procstat::tree_cpu_seconds(static_cast<int>(::getpid()));
      server_cpu(server_cpu1);
      db_cpu1 = db_cpu();
      read_db_counters(db_counters1);
    };
  }
  if (shop)
    hooks.after_setup = [&] {
      std::size_t ready;
      {
        std::lock_guard lock{shop->mu};
        ready = shop->free.size();
      }
      std::cerr << "set-up done: " << ready << " customers ready\n";
      if (!shop->unavailable.empty())
        throw std::runtime_error("unavailable: " + shop->unavailable);
      std::string why;
      for (auto& [what, body] : shop->setup_errors)
        why += "; " + what + ": " + body;
      if (ready < static_cast<std::size_t>(o.connections))
        throw std::runtime_error("only " + std::to_string(ready) + " customers could be set up ("
                                 + std::to_string(shop->setup_failed_customers)
                                 + " failed); need one per connection" + why);
      if (!why.empty())
        std::cerr << "set-up failures" << why << "\n";
      if (!o.customers_file.empty())
        shop->save_customers(o.customers_file);
    };

  // A subscriber of the first catalog product that never reads (feeds.hpp).
  std::unique_ptr<feeds::stalled_subscriber> stalled;
  double dropped_before = -1;
  if (o.stalled_subscriber) {
    dropped_before = feeds::metric_value(fetch(where, "GET", "/metrics").body,
                                         "emporium_feed_dropped_total");
    stalled = std::make_unique<feeds::stalled_subscriber>(where, "product:" + cat->ids().front());
    stalled->start();
    std::this_thread::sleep_for(std::chrono::milliseconds{500}); // its subscription is served
  }

  run_stats st;
  try {
    st = run_load(eo, *sc, hooks);
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    if (shop && !shop->unavailable.empty()) {
      result["available"] = false;
      result["unavailable_reason"] = shop->unavailable;
      summarize(std::cerr, result);
      emit(o, result);
      return exit_unavailable;
    }
    throw;
  }

  if (stalled) {
    auto j = stalled->finish(5);
    auto after = feeds::metric_value(fetch(where, "GET", "/metrics").body,
                                     "emporium_feed_dropped_total");
    j["dropped_total_before"] = dropped_before;
    j["dropped_total_after"] = after;
    result["stalled_subscriber"] = j;
  }

  if (!o.timeline_file.empty())
    write_timeline(o.timeline_file, st);

  double secs = st.elapsed_s > 0 ? st.elapsed_s : o.duration;
  result["duration_s"] = secs; // measured; shorter than asked when --once finished early
  result["requests"] = st.requests;
  result["ok"] = st.ok;
  result["requests_per_second"] = static_cast<double>(st.requests) / secs;
  result["ok_per_second"] = static_cast<double>(st.ok) / secs;
  result["bytes_per_second"] = static_cast<double>(st.bytes_read) / secs;
  result["latency_ms"] = latency_json(st.latency);
  json curve = json::array();
  for (auto& [p, v] : st.latency.percentile_curve())
    curve.push_back({p, ms(v)});
  result["percentiles"] = curve;
  result["errors"] = {{"total", st.errors()},
                      {"by_status", status_json(st.by_status)},
                      {"by_kind", kind_json(st.by_kind)}};
  if (o.rate > 0) {
    result["unfinished"] = st.unfinished;
    result["backlog_peak"] = st.backlog_peak;
  }
  json ops = json::object();
  for (std::size_t i = 0; i < st.ops.size(); ++i) {
    const auto& op = st.ops[i];
    if (op.requests == 0 && op.by_kind == std::array<std::uint64_t, 4>{})
      continue;
    json errors = status_json(op.by_status);
    for (std::size_t k = 0; k < op.by_kind.size(); ++k)
      if (op.by_kind[k])
        errors[error_kind_names[k]] = op.by_kind[k];
    ops[st.op_names[i]] = {{"requests", op.requests},
                           {"ok", op.ok},
                           {"per_second", static_cast<double>(op.requests) / secs},
                           {"latency_ms", latency_json(op.latency)},
                           {"errors", errors}};
    if (!op.samples.empty()) {
      json samples = json::object();
      for (auto& [status, body] : op.samples)
        samples[std::to_string(status)] = body;
      ops[st.op_names[i]]["error_samples"] = samples;
    }
  }
  result["operations"] = ops;
  auto per_1k = [&st](double cpu) {
    return st.requests ? cpu / static_cast<double>(st.requests) * 1000.0 : 0.0;
  };
  if (!o.server_pids.empty()) {
    double cpu = 0;
    std::int64_t hwm = 0, rss = 0;
    json by_pid = json::object();
    for (std::size_t i = 0; i < o.server_pids.size(); ++i) {
      int pid = o.server_pids[i];
      double one = server_cpu1[i] - server_cpu0[i];
      cpu += one;
      hwm += std::max<std::int64_t>(0, procstat::tree_status_kib(pid, "VmHWM"));
      rss += std::max<std::int64_t>(0, procstat::tree_status_kib(pid, "VmRSS"));
      by_pid[std::to_string(pid)] = {{"cpu_s", one}, {"cpu_s_per_1k", per_1k(one)}};
    }
    result["server"] = {{"pid", o.server_pids.front()},
                        {"pids", o.server_pids},
                        {"cpu_s", cpu},
                        {"cpu_s_per_1k", per_1k(cpu)},
                        {"cpu_cores", cpu / secs},
                        {"by_pid", by_pid},
                        {"vm_hwm_kib", hwm},
                        {"vm_rss_kib", rss}};
  }
  if (!o.server_pids.empty() || !o.db_pids.empty()) {
    double cpu = generator_cpu1 - generator_cpu0;
    result["generator"] = {{"cpu_s", cpu}, {"cpu_s_per_1k", per_1k(cpu)}};
  }
  if (!o.db_pids.empty()) {
    double cpu = db_cpu1 - db_cpu0;
    result["db"] = {{"pids", o.db_pids}, {"cpu_s", cpu}, {"cpu_s_per_1k", per_1k(cpu)}};
    if (db_counters0 && db_counters1)
      result["db"]["writes"] = writes_json(difference(*db_counters0, *db_counters1),
                                           shop ? shop->acks_measured : 0);
  }

  int rc = 0;
  if (shop) {
    json setup_errors = json::object();
    for (auto& [what, body] : shop->setup_errors)
      setup_errors[what] = body;
    result["setup"] = {{"errors", setup_errors},
                       {"accounts", shop->accounts},
                       {"accounts_seconds", accounts_s},
                       {"seconds", st.setup_s},
                       {"requests", st.setup_requests},
                       {"failed_requests", st.setup_failures},
                       {"customers", shop->customers.size()},
                       {"failed_customers", shop->setup_failed_customers}};
    result["orders"] = {{"acknowledged", shop->acks.size()},
                        {"acknowledged_in_window", shop->acks_measured},
                        {"per_second", static_cast<double>(shop->acks_measured) / secs},
                        {"out_of_stock", shop->out_of_stock},
                        {"unshippable", shop->unshippable},
                        {"ambiguous", shop->ambiguous},
                        {"paid", shop->payments_ok},
                        {"payment_failed", shop->payments_failed}};
    result["orders"]["checkout_409"] = shop->checkout_409;
    json acc;
    std::int64_t hot_stock_after = -1;
    std::vector<std::string> cancelled;
    if (verify) {
      auto v = accounting::verify(o.pg_url, before, shop->acks, shop->customer_ids(),
                                  shop->ambiguous);
      if (hot && v.stock_after.count(hot_id))
        hot_stock_after = v.stock_after[hot_id];
      cancelled = v.cancelled;
      acc = {{"checked", true},
             {"passed", v.passed},
             {"acknowledged", v.acknowledged},
             {"found_once", v.found_once},
             {"unacknowledged_committed", v.unacknowledged_committed},
             {"products_checked", v.products_checked},
             {"products_mismatched", v.products_mismatched},
             {"negative_stock", v.negative_stock},
             {"units_ordered", v.units_ordered},
             {"failures", v.failures}};
      if (!v.passed)
        rc = exit_failed;
    } else {
      acc = {{"checked", false}, {"reason", "--no-verify"}};
      if (hot) { // without the database: the stock the server shows
        auto j = json::parse(fetch(where, "GET", "/products/" + hot_id).body, nullptr, false);
        if (j.is_object() && j.contains("stock") && j["stock"].is_number_integer())
          hot_stock_after = j["stock"].get<std::int64_t>();
      }
    }
    result["accounting"] = acc;
    if (hot) {
      auto h = hot_sku_verdict(o, *shop, hot_id, hot_stock_before, hot_stock_after, cancelled);
      if (!h["passed"].get<bool>())
        rc = exit_failed;
      result["hot_sku"] = h;
    }
  }
  result["passed"] = rc == 0;
  summarize(std::cerr, result);
  emit(o, result);
  if (rc != 0)
    std::cerr << "emporium-bench: FAILED: the database does not match what was acknowledged"
              << (hot ? ", or the hot product was oversold or did not sell out as asked" : "")
              << "\n";
  return rc;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App cli{"emporium-bench: load generator for Emporium (closed and open loop)"};
  options o;
  cli.add_option("--target", o.target_url, "http://host:port of the server")->required();
  cli
    .add_option("--scenario", o.scenario,
                "get, product-get, browse, search, checkout, hot-sku, mix, stock-patch, "
                "subscribe")
    ->check(CLI::IsMember(scenario_names()));
  cli.add_option("--connections,-c", o.connections, "keep-alive connections")
    ->check(CLI::Range(1, 100'000));
  cli.add_option("--duration,-d", o.duration, "measured seconds")->check(CLI::Range(0.1, 86'400.0));
  cli
    .add_option("--rate,-R", o.rate,
                "open loop: requests per second over all connections (latency from each "
                "request's intended send time); 0 = closed loop")
    ->check(CLI::Range(0.0, 10'000'000.0));
  cli.add_option("--json", o.json_file, "write the result as JSON to FILE ('-' = stdout)");
  cli.add_option("--timeline", o.timeline_file,
                 "write per-second latency (p50, p99, max) and errors per request kind to FILE "
                 "(tab-separated)");
  cli.add_option("--threads,-t", o.threads, "generator threads (1 or 2 on this machine)")
    ->check(CLI::Range(1, 64));
  cli.add_option("--warmup", o.warmup, "seconds run before measuring")
    ->check(CLI::Range(0.0, 3600.0));
  cli
    .add_option("--timeout", o.timeout, "seconds before a request (or connect) counts as timed out")
    ->check(CLI::Range(0.01, 3600.0));
  cli
    .add_option("--zipf", o.zipf,
                "product-get/mix: Zipf exponent of product popularity (0 = uniform)")
    ->check(CLI::Range(0.0, 5.0));
  cli.add_option("--path", o.path, "get: the path to request");
  cli.add_option("--pg-url", o.pg_url,
                 "PostgreSQL of the server (ids, stock snapshot, accounting)");
  cli.add_flag("--ids-from-pg", o.ids_from_pg,
               "read product ids from --pg-url instead of paging GET /products");
  cli.add_option("--ids-from", o.ids_from,
                 "http://host:port to page GET /products from (default: --target)");
  cli.add_option("--ids-file", o.ids_file,
                 "read product ids from FILE, one per line ('#' comments), instead of paging "
                 "GET /products");
  cli.add_option("--ids-limit", o.ids_limit, "use at most this many product ids (0 = all)");
  cli.add_option("--customers", o.customers,
                 "checkout/mix: simulated customers (default: connections; mix: 2000)");
  cli.add_option("--customers-file", o.customers_file,
                 "checkout/mix: reuse registered customers from FILE and save them to it");
  cli.add_option("--write-products", o.write_products,
                 "checkout/mix: products orders draw from (a random sample; 0 = all)");
  cli.add_option("--max-lines", o.max_lines, "checkout: up to this many products per order")
    ->check(CLI::Range(1, 50));
  cli.add_flag("--once", o.once,
               "product-get: request every product id once, in id order, then stop (closed loop; "
               "--duration is then an upper bound)");
  auto* accounts_opt = cli.add_option(
    "--accounts", o.accounts,
    "checkout/mix/hot-sku: registered accounts the simulated customers shop on "
    "(each customer has its own cart; customer i uses account i % accounts; "
    "hot-sku default: one per customer)");
  accounts_opt->check(CLI::Range(1, 10'000'000));
  cli
    .add_option("--hot-stock", o.hot_stock,
                "hot-sku: stock of the product created for the run (limited: it sells out)")
    ->check(CLI::Range(std::int64_t{0}, std::int64_t{1'000'000'000}));
  cli.add_option("--hot-product", o.hot_product,
                 "hot-sku: order this existing product instead of creating one");
  cli.add_flag("--expect-sellout", o.expect_sellout,
               "hot-sku: fail unless the stock ran out during the run and checkouts were "
               "refused with 409 after it (the oversell check exercised)");
  cli
    .add_option("--quantity", o.quantity,
                "checkout/hot-sku: units per order line (default: checkout 1 or 2, hot-sku 1)")
    ->check(CLI::Range(std::int64_t{0}, std::int64_t{1'000'000}));
  cli
    .add_option("--requests", o.max_requests,
                "closed loop: stop after this many requests (warm-up included, set-up not): a "
                "fixed amount of work, for profilers")
    ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1'000'000'000}));
  cli
    .add_option("--setup-parallel", o.setup_parallel,
                "checkout/mix: sign-ups at once (they hash passwords: too many at once time out)")
    ->check(CLI::Range(1, 1'000));
  cli.add_flag("--no-verify", o.no_verify, "checkout/mix: skip the PostgreSQL accounting");
  cli.add_option("--seed", o.seed, "random seed");
  cli.add_option("--label", o.label, "name of this run in the JSON");
  cli.add_option("--server-pid", o.server_pids,
                 "report this process's CPU (with its children) over the measured window and its "
                 "peak RSS; repeat it for the nodes of a cluster (summed, and each in by_pid)");
  cli.add_option("--db-pid", o.db_pids,
                 "also report the CPU of these process trees (PostgreSQL "
                 "postmaster, redis-server) over the window");
  if (const char* key = std::getenv("EMPORIUM_ADMIN_KEY"))
    o.admin_key = key;
  cli.add_option("--admin-key", o.admin_key,
                 "stock-patch, subscribe: the admin key (default: $EMPORIUM_ADMIN_KEY)");
  cli
    .add_option("--products", o.products,
                "subscribe: subscribers spread over the first N products; stock-patch: the "
                "first N products are changed in turn")
    ->check(CLI::Range(1, 1'000'000));
  cli.add_option("--changes", o.changes, "subscribe: stock changes made once all subscribed")
    ->check(CLI::Range(1, 100'000));
  cli.add_option("--interval-ms", o.interval_ms, "subscribe: milliseconds between two changes")
    ->check(CLI::Range(0.0, 60'000.0));
  cli
    .add_option("--connect-parallel", o.connect_parallel,
                "subscribe: WebSocket handshakes in flight at once")
    ->check(CLI::Range(1, 100'000));
  cli.add_flag("--stalled-subscriber", o.stalled_subscriber,
               "open one WebSocket subscriber of the first catalog product that never reads "
               "(tiny receive buffer) before the run; report whether the server dropped it");
  CLI11_PARSE(cli, argc, argv);
  o.accounts_given = accounts_opt->count() > 0;
  try {
    return run(o);
  } catch (const std::invalid_argument& e) {
    std::cerr << "emporium-bench: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "emporium-bench: " << e.what() << "\n";
    auto result = base_result(o);
    result["available"] = true;
    result["passed"] = false;
    result["error"] = e.what();
    emit(o, result);
    return exit_failed;
  }
}
