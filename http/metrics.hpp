#pragma once
/// A small Prometheus registry: counters, gauges and histograms with fixed buckets, in families
/// of labelled children, rendered in the text exposition format (version 0.0.4). No library:
/// what /metrics needs fits in one file, and every update is a relaxed atomic.
///
/// Families and children live as long as the registry; a child's reference stays valid, so hot
/// paths look a child up once and keep it.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace emporium::http::metrics {

/// Label values in the family's label order.
using label_values = std::vector<std::string>;

class counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double d);
  void inc() { add(1); }
  void dec() { add(-1); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class histogram {
 public:
  /// `bounds`: ascending upper bounds; +Inf is implied.
  explicit histogram(const std::vector<double>& bounds);
  void observe(double v);

  struct snapshot {
    std::vector<std::uint64_t> cumulative; ///< one per bound, then +Inf (== count)
    double sum = 0;
  };
  snapshot read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_; ///< not cumulative; last is +Inf
  std::atomic<double> sum_{0};
};

enum class kind { counter, gauge, histogram };

/// One metric name with its help text, type and label names, and its children.
template <class Metric>
class family {
 public:
  family(std::string name, std::string help, std::vector<std::string> labels,
         std::vector<double> bounds = {})
    : name_(std::move(name)),
      help_(std::move(help)),
      labels_(std::move(labels)),
      bounds_(std::move(bounds)) {}

  /// The child for `values` (created on first use). Thread-safe.
  Metric& with(const label_values& values);
  /// The child without labels.
  Metric& get() { return with({}); }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& labels() const { return labels_; }
  /// Calls `fn(values, metric)` for each child, in label order.
  void for_each(const std::function<void(const label_values&, const Metric&)>& fn) const;

 private:
  std::string name_;
  std::string help_;
  std::vector<std::string> labels_;
  std::vector<double> bounds_;
  mutable std::mutex mtx_;
  std::map<label_values, std::unique_ptr<Metric>> children_;
};

/// Writes families in the text format; also used for values read elsewhere at scrape time
/// (the actor runtime's and the cache's counters).
class writer {
 public:
  void header(std::string_view name, std::string_view help, kind k);
  void sample(std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels,
              double value);
  void write(const family<counter>& f);
  void write(const family<gauge>& f);
  void write(const family<histogram>& f);
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

/// Every family this process exports from the HTTP layer. One per process; several servers in
/// one process (tests) add up.
class registry {
 public:
  registry();

  family<counter>& family_counter(std::string name, std::string help,
                                  std::vector<std::string> labels = {});
  family<gauge>& family_gauge(std::string name, std::string help,
                              std::vector<std::string> labels = {});
  family<histogram>& family_histogram(std::string name, std::string help,
                                      std::vector<std::string> labels, std::vector<double> bounds);

  /// Adds a function run at every scrape that writes more families (values owned elsewhere).
  void add_collector(std::function<void(writer&)> fn);

  /// The whole exposition.
  std::string render() const;

 private:
  mutable std::mutex mtx_;
  std::vector<std::unique_ptr<family<counter>>> counters_;
  std::vector<std::unique_ptr<family<gauge>>> gauges_;
  std::vector<std::unique_ptr<family<histogram>>> histograms_;
  std::vector<std::function<void(writer&)>> collectors_;
  std::vector<std::pair<kind, std::size_t>> order_;
};

/// The process-wide registry.
registry& global();

/// The label value for an HTTP status: "2xx", "4xx", ...
std::string status_class(int status);

/// The families the HTTP server and the gateway update, looked up once.
struct http_families {
  family<counter>& requests;   ///< method, route, status_class
  family<histogram>& duration; ///< method, route, status_class (seconds)
  gauge& in_flight;
  gauge& connections;
  counter& connections_refused;
  family<counter>& rate_limited; ///< class
  counter& rate_limit_fallbacks;
  gauge& rate_limit_redis_up;
  gauge& rate_limit_buckets;

  /// The children of `requests` and `duration` for one answer's labels, found by one lookup
  /// that allocates nothing (every answer takes them), created on first use. Thread-safe.
  struct request_children {
    counter* requests;
    histogram* duration;
  };
  request_children request_metrics(std::string_view method, std::string_view route,
                                   std::string_view status_class);

  std::mutex children_mtx{};
  std::map<std::string, request_children, std::less<>> children{}; ///< "method route class"
};
http_families& http();

} // namespace emporium::http::metrics
