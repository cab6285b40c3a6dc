#include "bench/histogram.hpp"
#include "bench/zipf.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using emporium::bench::histogram;
using emporium::bench::zipf_distribution;

namespace {

/// The exact percentile of sorted samples, with the histogram's definition: the smallest value
/// such that at least p % of the samples are ≤ it.
std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double p) {
  auto n = sorted.size();
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
  rank = std::clamp<std::size_t>(rank, 1, n);
  return sorted[rank - 1];
}

double relative_error(std::uint64_t got, std::uint64_t want) {
  if (want == 0)
    return got == 0 ? 0.0 : 1.0;
  return std::abs(static_cast<double>(got) - static_cast<double>(want)) / static_cast<double>(want);
}

} // namespace

TEST_CASE("histogram: an empty histogram reports zeros", "[bench][histogram]") {
  histogram h;
  CHECK(h.count() == 0);
  CHECK(h.min() == 0);
  CHECK(h.max() == 0);
  CHECK(h.mean() == 0.0);
  CHECK(h.value_at_percentile(50) == 0);
  CHECK(h.value_at_percentile(100) == 0);
  CHECK(h.percentile_curve().empty());
}

TEST_CASE("histogram: buckets tile the value range without gaps", "[bench][histogram]") {
  CHECK(histogram::lowest_in(0) == 0);
  for (std::size_t i = 0; i + 1 < histogram::bucket_count(); ++i) {
    INFO("bucket " << i);
    REQUIRE(histogram::highest_in(i) + 1 == histogram::lowest_in(i + 1));
    REQUIRE(histogram::bucket_of(histogram::lowest_in(i)) == i);
    REQUIRE(histogram::bucket_of(histogram::highest_in(i)) == i);
    // Width relative to the smallest value in the bucket: at most 1/M (< 1 %).
    auto lo = histogram::lowest_in(i);
    auto width = histogram::highest_in(i) - lo + 1;
    if (lo > 0)
      REQUIRE(static_cast<double>(width - 1) / static_cast<double>(lo) < 0.01);
  }
}

TEST_CASE("histogram: small values are exact", "[bench][histogram]") {
  histogram h;
  for (std::uint64_t v = 1; v <= 100; ++v)
    h.record(v);
  CHECK(h.count() == 100);
  CHECK(h.min() == 1);
  CHECK(h.max() == 100);
  CHECK(h.value_at_percentile(50) == 50);
  CHECK(h.value_at_percentile(90) == 90);
  CHECK(h.value_at_percentile(99) == 99);
  CHECK(h.value_at_percentile(99.9) == 100);
  CHECK(h.value_at_percentile(100) == 100);
  CHECK(h.value_at_percentile(0) == 1);
  CHECK(h.mean() == Approx(50.5));
}

TEST_CASE("histogram: percentiles within 1 % of the exact ones", "[bench][histogram]") {
  std::mt19937_64 rng{12345};
  // Latency-like data in nanoseconds: a log-normal body around 0.5 ms with a heavy tail.
  std::lognormal_distribution<double> body{std::log(500'000.0), 0.6};
  std::exponential_distribution<double> tail{1.0 / 20'000'000.0};
  std::uniform_real_distribution<double> coin{0, 1};
  histogram h;
  std::vector<std::uint64_t> values;
  for (int i = 0; i < 200'000; ++i) {
    double v = coin(rng) < 0.995 ? body(rng) : tail(rng);
    auto x = static_cast<std::uint64_t>(v) + 1;
    values.push_back(x);
    h.record(x);
  }
  std::sort(values.begin(), values.end());
  CHECK(h.count() == values.size());
  CHECK(h.min() == values.front());
  CHECK(h.max() == values.back());
  for (double p : {1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    INFO("p" << p);
    auto got = h.value_at_percentile(p);
    auto want = exact_percentile(values, p);
    CHECK(relative_error(got, want) <= 0.01);
    CHECK(got >= want); // reported as the upper bound of the bucket: never understated
  }
  long double sum = 0;
  for (auto v : values)
    sum += v;
  CHECK(h.mean() == Approx(static_cast<double>(sum / values.size())).epsilon(0.01));
}

TEST_CASE("histogram: values over the whole range", "[bench][histogram]") {
  histogram h;
  std::vector<std::uint64_t> probes{
    0, 1, 255, 256, 257, 1'000, 65'535, 1'000'000, 123'456'789, (std::uint64_t{1} << 40) - 1};
  for (auto v : probes) {
    histogram one;
    one.record(v);
    INFO("value " << v);
    CHECK(one.value_at_percentile(50) == v); // clamped to min/max: exact for a single value
    auto b = histogram::bucket_of(v);
    CHECK(histogram::lowest_in(b) <= v);
    CHECK(v <= histogram::highest_in(b));
  }
}

TEST_CASE("histogram: values beyond the range share the last bucket, max stays exact",
          "[bench][histogram]") {
  histogram h;
  std::uint64_t huge = std::uint64_t{1} << 50;
  h.record(10);
  h.record(huge);
  CHECK(histogram::bucket_of(huge) == histogram::bucket_count() - 1);
  CHECK(h.max() == huge);
  CHECK(h.value_at_percentile(100) == huge);
  CHECK(h.value_at_percentile(99) == huge);
  CHECK(h.value_at_percentile(50) == 10);
}

TEST_CASE("histogram: merge equals recording everything in one", "[bench][histogram]") {
  std::mt19937_64 rng{7};
  std::uniform_int_distribution<std::uint64_t> d{1, 50'000'000};
  histogram a, b, all;
  for (int i = 0; i < 10'000; ++i) {
    auto v = d(rng);
    (i % 3 ? a : b).record(v);
    all.record(v);
  }
  histogram merged;
  merged.merge(a);
  merged.merge(b);
  CHECK(merged.count() == all.count());
  CHECK(merged.min() == all.min());
  CHECK(merged.max() == all.max());
  for (double p : {50.0, 90.0, 99.0, 99.9})
    CHECK(merged.value_at_percentile(p) == all.value_at_percentile(p));
  histogram empty;
  merged.merge(empty);
  CHECK(merged.count() == all.count());
  merged.reset();
  CHECK(merged.count() == 0);
  CHECK(merged.max() == 0);
}

TEST_CASE("histogram: record with a count", "[bench][histogram]") {
  histogram h;
  h.record(1'000, 99);
  h.record(1'000'000, 1);
  h.record(5, 0);
  CHECK(h.count() == 100);
  CHECK(h.min() == 1'000);
  CHECK(relative_error(h.value_at_percentile(99), 1'000) <= 0.01);
  CHECK(h.value_at_percentile(99.5) == 1'000'000);
}

TEST_CASE("histogram: the percentile curve rises and ends at max", "[bench][histogram]") {
  histogram h;
  for (std::uint64_t v = 1; v <= 10'000; ++v)
    h.record(v * 1'000);
  auto curve = h.percentile_curve();
  REQUIRE(curve.size() > 10);
  CHECK(curve.front().first == 0.0);
  CHECK(curve.front().second == h.min());
  CHECK(curve.back().first == 100.0);
  CHECK(curve.back().second == h.max());
  for (std::size_t i = 1; i < curve.size(); ++i) {
    CHECK(curve[i].first > curve[i - 1].first);
    CHECK(curve[i].second >= curve[i - 1].second);
  }
}

TEST_CASE("zipf: exponent 0 is uniform, exponent 1 is skewed", "[bench][zipf]") {
  std::mt19937_64 rng{99};
  zipf_distribution uniform{1'000, 0.0};
  CHECK(uniform.probability(0) == Approx(0.001));
  CHECK(uniform.probability(999) == Approx(0.001));

  zipf_distribution skewed{1'000, 1.0};
  // H(1000) ≈ 7.4855: P(rank 0) = 1/H.
  CHECK(skewed.probability(0) == Approx(1.0 / 7.4855).epsilon(0.001));
  CHECK(skewed.probability(1) == Approx(skewed.probability(0) / 2));
  std::vector<int> hits(1'000);
  const int draws = 200'000;
  for (int i = 0; i < draws; ++i) {
    auto k = skewed(rng);
    REQUIRE(k < 1'000);
    ++hits[k];
  }
  CHECK(static_cast<double>(hits[0]) / draws == Approx(skewed.probability(0)).epsilon(0.05));
  CHECK(hits[0] > hits[9] * 5);
}
