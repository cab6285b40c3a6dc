#pragma once
/// Which node owns an entity: rendezvous (highest-random-weight) hashing of the entity key over
/// the live members. Every node computes the same owner from the same member list, with no
/// coordination: the hash is xxHash64 (fixed across builds, processes and machines, unlike
/// std::hash). When a member leaves, only the keys it owned move, spread evenly over the others;
/// when it returns, exactly those keys move back.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace emporium::core {

class ring {
 public:
  ring() = default;
  /// The members by name (host:port); order and duplicates do not matter.
  explicit ring(std::vector<std::string> members);

  /// The member owning `key`; empty when there are no members.
  const std::string& owner(std::string_view key) const;

  const std::vector<std::string>& members() const { return members_; }
  bool contains(std::string_view member) const;

 private:
  std::vector<std::string> members_; ///< sorted, unique
  std::vector<std::uint64_t> seeds_; ///< xxHash64 of each member's name
};

/// xxHash64 of `text` with `seed`.
std::uint64_t xxhash64(std::string_view text, std::uint64_t seed = 0);

} // namespace emporium::core
