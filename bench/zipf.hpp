#pragma once
/// Samplers for picking catalog entries: uniform, or Zipf-skewed (a few hot products get most
/// reads, as in real shops). Zipf draws by binary search in a precomputed CDF: exact for any
/// exponent, 8 bytes per item (8 MB for a million products), O(log n) per draw.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace emporium::bench {

class zipf_distribution {
 public:
  /// Ranks 0..n−1 with P(rank k) ∝ 1/(k+1)^s. s = 0 is uniform.
  zipf_distribution(std::size_t n, double s) : cdf_(n) {
    double sum = 0;
    for (std::size_t k = 0; k < n; ++k) {
      sum += s == 0 ? 1.0 : 1.0 / std::pow(static_cast<double>(k + 1), s);
      cdf_[k] = sum;
    }
    for (auto& c : cdf_)
      c /= sum;
  }

  std::size_t size() const noexcept { return cdf_.size(); }

  /// Probability of rank k (for tests and reports).
  double probability(std::size_t k) const noexcept {
    return k == 0 ? cdf_[0] : cdf_[k] - cdf_[k - 1];
  }

  template <class Rng>
  std::size_t operator()(Rng& rng) const {
    double u = std::uniform_real_distribution<double>{0.0, 1.0}(rng);
    auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
    return std::min<std::size_t>(static_cast<std::size_t>(it - cdf_.begin()), cdf_.size() - 1);
  }

 private:
  std::vector<double> cdf_;
};

} // namespace emporium::bench
