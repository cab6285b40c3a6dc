#include "actors/product_snapshot.hpp"

#include <functional>

namespace emporium::actors {

product_registry::shard& product_registry::shard_of(std::string_view id) const {
  // The map hashes the whole key again; the shard takes the high bits so the two do not align.
  auto h = std::hash<std::string_view>{}(id);
  return shards_[(h >> 20) % shard_count];
}

void product_registry::replace(map_type& map, map_type::iterator it, snapshot_ptr snap) {
  // The key views the old snapshot's id: re-key the node to the new one before that goes.
  auto node = map.extract(it);
  node.mapped().snap = std::move(snap);
  node.key() = node.mapped().snap->product.id;
  map.insert(std::move(node));
}

void product_registry::publish(snapshot_ptr snap, std::uint64_t owner) {
  if (!snap)
    return;
  auto& s = shard_of(snap->product.id);
  std::lock_guard<std::mutex> lock{s.m};
  auto it = s.map.find(snap->product.id);
  if (it == s.map.end()) {
    std::string_view key = snap->product.id;
    s.map.emplace(key, entry{std::move(snap), 0, owner});
    size_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  it->second.owner = owner;
  if (snap->product.version >= it->second.snap->product.version)
    replace(s.map, it, std::move(snap));
}

void product_registry::withhold(const std::string& id, std::int64_t version) {
  auto& s = shard_of(id);
  std::lock_guard<std::mutex> lock{s.m};
  auto it = s.map.find(id);
  if (it == s.map.end())
    return;
  auto& e = it->second;
  if (e.snap->product.version < version)
    e.floor = std::max(e.floor, version);
}

void product_registry::remove(const std::string& id, std::uint64_t owner) {
  auto& s = shard_of(id);
  std::lock_guard<std::mutex> lock{s.m};
  auto it = s.map.find(id);
  if (it == s.map.end() || it->second.owner != owner)
    return;
  s.map.erase(it);
  size_.fetch_sub(1, std::memory_order_relaxed);
}

snapshot_ptr product_registry::find(std::string_view id) const {
  auto& s = shard_of(id);
  std::lock_guard<std::mutex> lock{s.m};
  auto it = s.map.find(id);
  if (it == s.map.end() || it->second.snap->product.version < it->second.floor)
    return nullptr;
  it->second.last_read = std::chrono::steady_clock::now();
  return it->second.snap;
}

bool product_registry::read_since(const std::string& id,
                                  std::chrono::steady_clock::time_point since) const {
  auto& s = shard_of(id);
  std::lock_guard<std::mutex> lock{s.m};
  auto it = s.map.find(id);
  return it != s.map.end() && it->second.last_read >= since;
}

} // namespace emporium::actors
