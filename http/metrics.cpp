#include "http/metrics.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace emporium::http::metrics {

namespace {

void atomic_add(std::atomic<double>& a, double d) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed))
    ;
}

/// Prometheus float text: integers without a fraction, +Inf/-Inf/NaN spelled its way.
std::string number(double v) {
  if (std::isnan(v))
    return "NaN";
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  // The shortest text that reads back as the same double (0.0005, not 0.00050000000000000001).
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v)
      break;
  }
  return buf;
}

/// Label values escape backslash, double quote and line feed.
void append_escaped(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

/// Help text escapes backslash and line feed.
void append_help(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

std::vector<std::pair<std::string, std::string>> zip(const std::vector<std::string>& names,
                                                     const label_values& values) {
  std::vector<std::pair<std::string, std::string>> out;
  for (std::size_t i = 0; i < names.size() && i < values.size(); ++i)
    out.emplace_back(names[i], values[i]);
  return out;
}

const std::vector<double> latency_bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};

} // namespace

// -- metrics --------------------------------------------------------------------------------------

void gauge::add(double d) {
  atomic_add(value_, d);
}

histogram::histogram(const std::vector<double>& bounds)
  : bounds_(bounds), buckets_(new std::atomic<std::uint64_t>[bounds.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i)
    buckets_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i])
    ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, v);
}

histogram::snapshot histogram::read() const {
  snapshot s;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(total);
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

template <class Metric>
Metric& family<Metric>::with(const label_values& values) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = children_.find(values);
  if (it != children_.end())
    return *it->second;
  std::unique_ptr<Metric> m;
  if constexpr (std::is_same_v<Metric, histogram>)
    m = std::make_unique<histogram>(bounds_);
  else
    m = std::make_unique<Metric>();
  return *children_.emplace(values, std::move(m)).first->second;
}

template <class Metric>
void family<Metric>::for_each(
  const std::function<void(const label_values&, const Metric&)>& fn) const {
  std::lock_guard<std::mutex> guard{mtx_};
  for (const auto& [values, m] : children_)
    fn(values, *m);
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

// -- writing --------------------------------------------------------------------------------------

void writer::header(std::string_view name, std::string_view help, kind k) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  append_help(out_, help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += k == kind::counter ? " counter\n" : k == kind::gauge ? " gauge\n" : " histogram\n";
}

void writer::sample(std::string_view name,
                    const std::vector<std::pair<std::string, std::string>>& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first)
        out_ += ',';
      first = false;
      out_ += k;
      out_ += "=\"";
      append_escaped(out_, v);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += number(value);
  out_ += '\n';
}

void writer::write(const family<counter>& f) {
  header(f.name(), f.help(), kind::counter);
  f.for_each([&](const label_values& v, const counter& c) {
    sample(f.name(), zip(f.labels(), v), static_cast<double>(c.value()));
  });
}

void writer::write(const family<gauge>& f) {
  header(f.name(), f.help(), kind::gauge);
  f.for_each([&](const label_values& v, const gauge& g) {
    sample(f.name(), zip(f.labels(), v), g.value());
  });
}

void writer::write(const family<histogram>& f) {
  header(f.name(), f.help(), kind::histogram);
  const std::string bucket = f.name() + "_bucket";
  f.for_each([&](const label_values& v, const histogram& h) {
    auto labels = zip(f.labels(), v);
    auto snap = h.read();
    for (std::size_t i = 0; i < snap.cumulative.size(); ++i) {
      auto with_le = labels;
      with_le.emplace_back("le", i < h.bounds().size() ? number(h.bounds()[i]) : "+Inf");
      sample(bucket, with_le, static_cast<double>(snap.cumulative[i]));
    }
    sample(f.name() + "_sum", labels, snap.sum);
    sample(f.name() + "_count", labels, static_cast<double>(snap.cumulative.back()));
  });
}

// -- the registry ---------------------------------------------------------------------------------

registry::registry() = default;

family<counter>& registry::family_counter(std::string name, std::string help,
                                          std::vector<std::string> labels) {
  std::lock_guard<std::mutex> guard{mtx_};
  counters_.push_back(
    std::make_unique<family<counter>>(std::move(name), std::move(help), std::move(labels)));
  order_.emplace_back(kind::counter, counters_.size() - 1);
  return *counters_.back();
}

family<gauge>& registry::family_gauge(std::string name, std::string help,
                                      std::vector<std::string> labels) {
  std::lock_guard<std::mutex> guard{mtx_};
  gauges_.push_back(
    std::make_unique<family<gauge>>(std::move(name), std::move(help), std::move(labels)));
  order_.emplace_back(kind::gauge, gauges_.size() - 1);
  return *gauges_.back();
}

family<histogram>& registry::family_histogram(std::string name, std::string help,
                                              std::vector<std::string> labels,
                                              std::vector<double> bounds) {
  std::lock_guard<std::mutex> guard{mtx_};
  histograms_.push_back(std::make_unique<family<histogram>>(std::move(name), std::move(help),
                                                            std::move(labels), std::move(bounds)));
  order_.emplace_back(kind::histogram, histograms_.size() - 1);
  return *histograms_.back();
}

void registry::add_collector(std::function<void(writer&)> fn) {
  std::lock_guard<std::mutex> guard{mtx_};
  collectors_.push_back(std::move(fn));
}

std::string registry::render() const {
  writer w;
  std::vector<std::function<void(writer&)>> collectors;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& [k, i] : order_) {
      if (k == kind::counter)
        w.write(*counters_[i]);
      else if (k == kind::gauge)
        w.write(*gauges_[i]);
      else
        w.write(*histograms_[i]);
    }
    collectors = collectors_;
  }
  for (const auto& fn : collectors)
    fn(w);
  return w.take();
}

registry& global() {
  static registry r;
  return r;
}

std::string status_class(int status) {
  if (status < 100 || status > 599)
    return "other";
  return std::to_string(status / 100) + "xx";
}

http_families::request_children http_families::request_metrics(std::string_view method,
                                                               std::string_view route,
                                                               std::string_view status_class) {
  std::array<char, 256> buf;
  std::string long_key;
  std::string_view key;
  if (method.size() + route.size() + status_class.size() + 2 <= buf.size()) {
    char* p = std::copy(method.begin(), method.end(), buf.data());
    *p++ = ' ';
    p = std::copy(route.begin(), route.end(), p);
    *p++ = ' ';
    p = std::copy(status_class.begin(), status_class.end(), p);
    key = std::string_view{buf.data(), static_cast<std::size_t>(p - buf.data())};
  } else {
    long_key.append(method).append(" ").append(route).append(" ").append(status_class);
    key = long_key;
  }
  std::lock_guard<std::mutex> guard{children_mtx};
  auto it = children.find(key);
  if (it != children.end())
    return it->second;
  label_values labels{std::string{method}, std::string{route}, std::string{status_class}};
  request_children c{&requests.with(labels), &duration.with(labels)};
  children.emplace(std::string{key}, c);
  return c;
}

http_families& http() {
  static http_families f = [] {
    auto& r = global();
    return http_families{
      r.family_counter("emporium_http_requests_total",
                       "HTTP requests answered, by method, route pattern and status class",
                       {"method", "route", "status_class"}),
      r.family_histogram("emporium_http_request_duration_seconds",
                         "Time from a request's arrival to its answer being ready",
                         {"method", "route", "status_class"}, latency_bounds),
      r.family_gauge("emporium_http_requests_in_flight",
                     "Requests read and not yet answered on the wire")
        .get(),
      r.family_gauge("emporium_http_connections_open", "Client connections open now").get(),
      r.family_counter("emporium_http_connections_refused_total",
                       "Connections refused with 503: http.max_connections open in all, or "
                       "http.max_connections_per_address from the client's address")
        .get(),
      r.family_counter("emporium_rate_limit_rejections_total",
                       "Requests answered 429 by the rate limiter, by route class", {"class"}),
      r.family_counter("emporium_rate_limit_redis_fallbacks_total",
                       "Requests limited by the local bucket because Redis was unreachable or late "
                       "(redis mode)")
        .get(),
      r.family_gauge("emporium_rate_limit_redis_up",
                     "1 while the rate limiter reaches Redis (redis mode), else 0")
        .get(),
      r.family_gauge("emporium_rate_limit_local_buckets", "Token buckets held in this process")
        .get(),
    };
  }();
  return f;
}

} // namespace emporium::http::metrics
