#pragma once
/// The hasher of the string-keyed tables that hold one entry per active entity (a manager's
/// entities, the product snapshot registry): a node may hold a million entries in each.
///
/// libstdc++ keeps a copy of each key's hash in its node when the hasher is
/// std::hash<std::string> or std::hash<std::string_view>, which it counts as slow to compute:
/// 8 bytes per entry, which takes both tables' nodes from jemalloc's 64-byte class to its 80.
/// For any other hasher that cannot throw it keeps none and hashes the key again when it needs
/// the hash (a rehash, a walk of one bucket, an erase): a few nanoseconds for an id.

#include <cstddef>
#include <functional>
#include <string_view>

namespace emporium::core {

struct compact_string_hash {
  std::size_t operator()(std::string_view key) const noexcept {
    return std::hash<std::string_view>{}(key);
  }
};

} // namespace emporium::core
