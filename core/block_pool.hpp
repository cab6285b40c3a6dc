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
///   Only then: a chunk with one block in use stays whole. After a burst of which a tenth stays
///   active, nearly every chunk keeps a survivor (jemalloc's slabs of the 1,280-byte class, 16
///   blocks each, would free about a sixth of theirs). Giving back the pages of free blocks
///   inside a chunk (madvise from the memory trimmer, with a per-chunk bitmap in place of the
///   free list) is the step that would remove that.
/// - Thread-safe, one mutex: an actor is allocated on its manager's thread and freed on
///   whichever thread drops its last reference.
/// - Under AddressSanitizer a free block is poisoned: a use after free is still reported.
///
/// A pool must outlive every block it handed out: the kinds that use one never destroy it
/// (pooled_actor.hpp).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>

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
  /// Blocks handed out and not given back, by every pool of the process.
  static std::int64_t blocks_in_all_pools() { return all_blocks_.load(std::memory_order_relaxed); }

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
  static inline std::atomic<std::int64_t> all_blocks_{0};
};

/// A standard allocator whose single objects come from a block_pool of their own type's size:
/// for `std::allocate_shared`, whose one allocation (control block and object) would otherwise
/// be rounded up to jemalloc's size class. Arrays (n > 1) go to the general allocator. The
/// pool is never destroyed: an object may outlive static destruction.
template <class T>
struct pool_allocator {
  static_assert(alignof(T) <= 16, "block_pool aligns blocks to 16");
  using value_type = T;

  pool_allocator() = default;
  template <class U>
  pool_allocator(const pool_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n != 1)
      return static_cast<T*>(::operator new(n * sizeof(T)));
    return static_cast<T*>(pool().allocate());
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (n != 1)
      ::operator delete(p);
    else
      pool().deallocate(p);
  }

  static block_pool& pool() {
    static auto* p = new block_pool(sizeof(T));
    return *p;
  }

  friend bool operator==(const pool_allocator&, const pool_allocator&) { return true; }
  friend bool operator!=(const pool_allocator&, const pool_allocator&) { return false; }
};

} // namespace emporium::core
