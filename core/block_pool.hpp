#pragma once
/// A pool of equal blocks, for the objects a node holds by the million (product actors).
///
/// Why not the general allocator: jemalloc rounds every allocation up to its size class, and
/// between 1 and 2 KiB the classes are 256 bytes apart. A product actor of 1,1xx bytes costs
/// 1,280 there; here it costs its size rounded up to 16.
///
/// - Blocks are carved from chunks of `chunk_size` bytes, aligned to their size, so a block
///   finds its chunk by masking its address. A chunk's pages are touched only as its blocks are
///   first handed out.
/// - A chunk whose blocks are all free goes back to the allocator at once, unless it is the only
///   chunk with room left: passivating actors gives memory back, as it did without the pool.
/// - Thread-safe, one mutex: an actor is allocated on its manager's thread and freed on
///   whichever thread drops its last reference.
/// - Under AddressSanitizer a free block is poisoned: a use after free is still reported.
///
/// A pool must outlive every block it handed out: the kinds that use one never destroy it
/// (pooled_actor.hpp).

#include <cstddef>
#include <mutex>

namespace emporium::core {

class block_pool {
 public:
  static constexpr std::size_t chunk_size = std::size_t{256} * 1024;

  /// Blocks of at least `block_size` bytes (rounded up to 16), aligned to 16.
  explicit block_pool(std::size_t block_size);
  ~block_pool();
  block_pool(const block_pool&) = delete;
  block_pool& operator=(const block_pool&) = delete;

  /// A block of block_size() bytes; throws std::bad_alloc when no chunk can be had.
  void* allocate();
  /// Gives back a block allocate() returned.
  void deallocate(void* block) noexcept;

  std::size_t block_size() const { return block_size_; }
  /// Blocks per chunk.
  std::size_t chunk_capacity() const { return capacity_; }

  struct usage {
    std::size_t blocks = 0; ///< handed out and not given back
    std::size_t chunks = 0; ///< held from the allocator
  };
  usage in_use() const;

 private:
  struct chunk;
  chunk* new_chunk();
  /// The list of chunks with room (a free block, or blocks never handed out).
  void link(chunk* c);
  void unlink(chunk* c);
  bool has_room(const chunk* c) const;

  std::size_t block_size_;
  std::size_t capacity_;
  mutable std::mutex m_;
  chunk* room_ = nullptr; ///< head of the list of chunks with room
  usage usage_;
};

} // namespace emporium::core
