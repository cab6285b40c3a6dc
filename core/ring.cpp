#include "core/ring.hpp"

#include <xxhash.h>

#include <algorithm>

namespace emporium::core {

std::uint64_t xxhash64(std::string_view text, std::uint64_t seed) {
  return XXH64(text.data(), text.size(), seed);
}

ring::ring(std::vector<std::string> members) : members_(std::move(members)) {
  std::sort(members_.begin(), members_.end());
  members_.erase(std::unique(members_.begin(), members_.end()), members_.end());
  seeds_.reserve(members_.size());
  for (const auto& m : members_)
    seeds_.push_back(xxhash64(m));
}

const std::string& ring::owner(std::string_view key) const {
  static const std::string none;
  if (members_.empty())
    return none;
  std::size_t best = 0;
  std::uint64_t best_weight = 0;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    // Ties (2^-64) go to the first name in order, the same on every node.
    const auto weight = xxhash64(key, seeds_[i]);
    if (i == 0 || weight > best_weight) {
      best = i;
      best_weight = weight;
    }
  }
  return members_[best];
}

bool ring::contains(std::string_view member) const {
  return std::binary_search(members_.begin(), members_.end(), member);
}

} // namespace emporium::core
