#include "bench/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace emporium::bench {

namespace {

constexpr std::uint64_t m = histogram::sub_buckets;
constexpr unsigned m_bits = histogram::sub_bucket_bits;
/// Below 2·M every value has its own bucket.
constexpr std::uint64_t exact_limit = 2 * m;

unsigned msb(std::uint64_t v) noexcept {
  return 63u - static_cast<unsigned>(__builtin_clzll(v));
}

} // namespace

histogram::histogram() : counts_(bucket_count(), 0) {}

std::size_t histogram::bucket_count() noexcept {
  // exact buckets, then M per power of two from 2^(m_bits+1) to 2^highest_exponent inclusive.
  return static_cast<std::size_t>(exact_limit + (highest_exponent - m_bits) * m);
}

std::size_t histogram::bucket_of(std::uint64_t value) noexcept {
  if (value < exact_limit)
    return static_cast<std::size_t>(value);
  unsigned e = msb(value);
  if (e > highest_exponent)
    return bucket_count() - 1;
  unsigned shift = e - m_bits;        // ≥ 1
  std::uint64_t sub = value >> shift; // in [M, 2M)
  return static_cast<std::size_t>(exact_limit + (e - m_bits - 1) * m + (sub - m));
}

std::uint64_t histogram::lowest_in(std::size_t index) noexcept {
  if (index < exact_limit)
    return index;
  std::uint64_t k = index - exact_limit;
  unsigned e = static_cast<unsigned>(k / m) + m_bits + 1;
  std::uint64_t sub = k % m + m;
  return sub << (e - m_bits);
}

std::uint64_t histogram::highest_in(std::size_t index) noexcept {
  if (index < exact_limit)
    return index;
  if (index + 1 >= bucket_count())
    return ~std::uint64_t{0};
  return lowest_in(index + 1) - 1;
}

void histogram::record(std::uint64_t value, std::uint64_t times) noexcept {
  if (times == 0)
    return;
  counts_[bucket_of(value)] += times;
  if (total_ == 0 || value < min_)
    min_ = value;
  if (value > max_)
    max_ = value;
  total_ += times;
}

void histogram::merge(const histogram& other) noexcept {
  if (other.total_ == 0)
    return;
  for (std::size_t i = 0; i < counts_.size(); ++i)
    counts_[i] += other.counts_[i];
  if (total_ == 0 || other.min_ < min_)
    min_ = other.min_;
  max_ = std::max(max_, other.max_);
  total_ += other.total_;
}

void histogram::reset() noexcept {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = min_ = max_ = 0;
}

double histogram::mean() const noexcept {
  if (total_ == 0)
    return 0;
  long double sum = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    if (!counts_[i])
      continue;
    long double lo = static_cast<long double>(lowest_in(i));
    long double hi = static_cast<long double>(std::min(highest_in(i), max_));
    sum += counts_[i] * (lo + hi) / 2;
  }
  return static_cast<double>(sum / total_);
}

std::uint64_t histogram::value_at_percentile(double percentile) const noexcept {
  if (total_ == 0)
    return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  if (percentile >= 100.0)
    return max_;
  // The rank of the value asked for, 1-based: at least one value.
  auto wanted = static_cast<std::uint64_t>(
    std::ceil(percentile / 100.0 * static_cast<double>(total_)));
  wanted = std::clamp<std::uint64_t>(wanted, 1, total_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= wanted)
      return std::clamp(highest_in(i), min_, max_);
  }
  return max_;
}

std::vector<std::pair<double, std::uint64_t>> histogram::percentile_curve(
  int ticks_per_half) const {
  std::vector<std::pair<double, std::uint64_t>> out;
  if (total_ == 0)
    return out;
  ticks_per_half = std::max(1, ticks_per_half);
  // The last value sits at percentile 100·(n−1)/n; beyond that the curve is just max().
  double last = 100.0 * (1.0 - 1.0 / static_cast<double>(total_));
  out.emplace_back(0.0, min_);
  for (int half = 1; half < 64; ++half) {
    double lo = 100.0 * (1.0 - std::ldexp(1.0, -(half - 1))); // 0, 50, 75, ...
    double hi = 100.0 * (1.0 - std::ldexp(1.0, -half));
    for (int t = 1; t <= ticks_per_half; ++t) {
      double p = lo + (hi - lo) * t / ticks_per_half;
      if (p > last)
        break;
      out.emplace_back(p, value_at_percentile(p));
    }
    if (hi > last)
      break;
  }
  out.emplace_back(100.0, max_);
  return out;
}

} // namespace emporium::bench
