#pragma once
/// Immutable snapshots of products, published node-wide by their product actors, so that a read
/// of an active product is answered on the HTTP thread without any actor message.
///
/// - A snapshot is one version of one product, never changed once published; its JSON body and
///   ETag are made once, by the first reader that needs them (`encoded`), and kept with it.
/// - The product actor keeps its current snapshot as its state and publishes every new one to the
///   registry before it answers the write that made it (create, PATCH, activation's load, a stock
///   message); it withdraws it when it stops (passivation, crash, absent).
/// - An order that committed a stock change withholds the older snapshot (`withhold`) before it
///   answers, so that a read after the order's answer never shows the stock from before it: such
///   a read goes to the product actor, behind the order's stock message, until the actor
///   publishes the new version.
/// - The registry says nothing about ownership: in a cluster only the snapshots of keys this node
///   serves now are current, and the caller checks that (runtime::product_snapshot).
///
/// Thread-safe: any thread may read; a shard's short mutex is held for a lookup and a copy of a
/// shared_ptr. No CAF here: the HTTP layer includes this header.

#include "core/block_pool.hpp"
#include "core/compact_hash.hpp"
#include "core/model.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace emporium::actors {

class product_snapshot {
 public:
  /// What a read answers: the body and the ETag of this version.
  struct encoding {
    std::string body;
    std::string etag;
  };
  using encoder = encoding (*)(const model::product&);

  explicit product_snapshot(model::product p) : product(std::move(p)) {}
  ~product_snapshot() { delete encoded_.load(std::memory_order_acquire); }
  product_snapshot(const product_snapshot&) = delete;
  product_snapshot& operator=(const product_snapshot&) = delete;

  /// The body and ETag, made by `make` on the first call and kept: concurrent first calls may
  /// both encode, one result is kept and every caller gets that one.
  const encoding& encoded(encoder make) const {
    if (const auto* e = encoded_.load(std::memory_order_acquire))
      return *e;
    auto fresh = std::make_unique<encoding>(make(product));
    const encoding* expected = nullptr;
    if (encoded_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel))
      return *fresh.release();
    return *expected;
  }

  const model::product product;

 private:
  mutable std::atomic<const encoding*> encoded_{nullptr};
};

using snapshot_ptr = std::shared_ptr<const product_snapshot>;

/// A snapshot of `p`. From a pool at its exact size (core::pool_allocator): a node holds one
/// per active product, and jemalloc would round its 288 bytes up to 320.
inline snapshot_ptr make_snapshot(model::product p) {
  return std::allocate_shared<product_snapshot>(core::pool_allocator<product_snapshot>{},
                                                std::move(p));
}

class product_registry {
 public:
  /// Publishes `snap` as the product's current state, from its actor `owner` (an id unique to
  /// one activation). A snapshot older than the one published is not served; one of the same
  /// version replaces it.
  void publish(snapshot_ptr snap, std::uint64_t owner);

  /// A transaction committed the product at row `version` (an order took or gave back stock):
  /// a snapshot older than that is withheld from now on, until its actor publishes `version` or
  /// later. The registry does not make that snapshot itself: it cannot know what else changed
  /// between its version and `version` (a PATCH may have committed in between). Nothing happens
  /// when no snapshot is published here.
  void withhold(const std::string& id, std::int64_t version);

  /// The actor `owner` stops: its snapshot is withdrawn (not one a later activation published).
  void remove(const std::string& id, std::uint64_t owner);

  /// The current snapshot of `id`, or null (none, or withheld).
  snapshot_ptr find(std::string_view id) const;

  /// Whether `id`'s snapshot was served by `find` at or after `since`. Reads from a snapshot
  /// never reach the product actor or its manager: the manager asks this before it passivates
  /// an entity it has not seen used, so a product read only from its snapshot stays active.
  bool read_since(const std::string& id, std::chrono::steady_clock::time_point since) const;

  /// Snapshots published (withheld ones included).
  std::int64_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  struct entry {
    snapshot_ptr snap;
    std::int64_t floor = 0; ///< a snapshot below this version is not served
    std::uint64_t owner = 0;
    /// When `find` last served it (written under the shard's lock).
    mutable std::chrono::steady_clock::time_point last_read{};
  };
  /// Keyed by a view of the entry's own snapshot's id: the key costs no allocation of its own.
  using map_type = std::unordered_map<std::string_view, entry, core::compact_string_hash>;
  struct alignas(64) shard {
    mutable std::mutex m;
    map_type map;
  };
  static constexpr std::size_t shard_count = 64;

  shard& shard_of(std::string_view id) const;
  static void replace(map_type& map, map_type::iterator it, snapshot_ptr snap);

  mutable std::array<shard, shard_count> shards_;
  std::atomic<std::int64_t> size_{0};
};

} // namespace emporium::actors
