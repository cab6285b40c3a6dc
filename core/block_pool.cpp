#include "core/block_pool.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define EMPORIUM_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define EMPORIUM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define EMPORIUM_POISON(p, n) ((void) (p), (void) (n))
#define EMPORIUM_UNPOISON(p, n) ((void) (p), (void) (n))
#endif

namespace emporium::core {

namespace {

constexpr std::size_t block_alignment = 16;
constexpr std::size_t round_up(std::size_t n, std::size_t to) {
  return (n + to - 1) / to * to;
}

} // namespace

/// The head of a chunk, in its first cache line; its blocks follow.
struct alignas(64) block_pool::chunk {
  chunk* prev = nullptr; ///< in the list of chunks with room, when `listed`
  chunk* next = nullptr;
  void* free = nullptr;        ///< blocks given back, linked through their first word
  std::byte* unused = nullptr; ///< blocks never handed out start here
  std::byte* end = nullptr;    ///< past the last block
  std::size_t used = 0;        ///< blocks handed out
  bool listed = false;
};

block_pool::block_pool(std::size_t block_size)
  : block_size_(round_up(std::max(block_size, sizeof(void*)), block_alignment)),
    capacity_((chunk_size - sizeof(chunk)) / block_size_) {
  if (capacity_ == 0)
    throw std::invalid_argument("block_pool: a block must fit in a chunk");
}

block_pool::~block_pool() {
  // Only the chunks with room are known here: a full chunk's blocks are all in use, and
  // freeing it would pull the memory from under them.
  while (room_) {
    auto* c = room_;
    unlink(c);
    if (c->used == 0) {
      EMPORIUM_UNPOISON(c, chunk_size);
      std::free(c);
    }
  }
}

bool block_pool::has_room(const chunk* c) const {
  return c->free || c->unused != c->end;
}

void block_pool::link(chunk* c) {
  c->prev = nullptr;
  c->next = room_;
  if (room_)
    room_->prev = c;
  room_ = c;
  c->listed = true;
}

void block_pool::unlink(chunk* c) {
  (c->prev ? c->prev->next : room_) = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  c->listed = false;
}

block_pool::chunk* block_pool::new_chunk() {
  void* memory = std::aligned_alloc(chunk_size, chunk_size);
  if (!memory)
    throw std::bad_alloc();
  auto* c = new (memory) chunk;
  c->unused = static_cast<std::byte*>(memory) + sizeof(chunk);
  c->end = c->unused + capacity_ * block_size_;
  EMPORIUM_POISON(c->unused, capacity_ * block_size_);
  ++usage_.chunks;
  return c;
}

void* block_pool::allocate() {
  std::lock_guard lock{m_};
  if (!room_)
    link(new_chunk());
  auto* c = room_;
  void* block;
  if (c->free) {
    block = c->free;
    EMPORIUM_UNPOISON(block, sizeof(void*));
    c->free = *static_cast<void**>(block);
  } else {
    block = c->unused;
    c->unused += block_size_;
  }
  EMPORIUM_UNPOISON(block, block_size_);
  ++c->used;
  ++usage_.blocks;
  all_blocks_.fetch_add(1, std::memory_order_relaxed);
  if (!has_room(c))
    unlink(c);
  return block;
}

void block_pool::deallocate(void* block) noexcept {
  auto* c = reinterpret_cast<chunk*>(reinterpret_cast<std::uintptr_t>(block) & ~(chunk_size - 1));
  std::lock_guard lock{m_};
  *static_cast<void**>(block) = c->free;
  c->free = block;
  EMPORIUM_POISON(block, block_size_);
  --c->used;
  --usage_.blocks;
  all_blocks_.fetch_sub(1, std::memory_order_relaxed);
  if (!c->listed)
    link(c);
  // An empty chunk goes back, unless it is the only one with room (the next allocation would
  // take a new one at once).
  if (c->used == 0 && (c->prev || c->next)) {
    unlink(c);
    EMPORIUM_UNPOISON(c, chunk_size);
    c->~chunk();
    std::free(c);
    --usage_.chunks;
  }
}

block_pool::usage block_pool::in_use() const {
  std::lock_guard lock{m_};
  return usage_;
}

} // namespace emporium::core
