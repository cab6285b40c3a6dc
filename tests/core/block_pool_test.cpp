#include "core/block_pool.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

using emporium::core::block_pool;

namespace {

bool filled_with(const void* block, std::size_t size, unsigned char value) {
  const auto* bytes = static_cast<const unsigned char*>(block);
  return std::all_of(bytes, bytes + size, [value](unsigned char b) { return b == value; });
}

} // namespace

TEST_CASE("block pool: blocks are 16-aligned, their exact size rounded to 16, and never overlap",
          "[block_pool]") {
  block_pool pool{1'100};
  REQUIRE(pool.block_size() == 1'104);
  const auto n = pool.chunk_capacity() * 3 + 7;
  std::vector<void*> blocks;
  for (std::size_t i = 0; i < n; ++i) {
    blocks.push_back(pool.allocate());
    CHECK(reinterpret_cast<std::uintptr_t>(blocks.back()) % 16 == 0);
    std::memset(blocks.back(), static_cast<int>(i % 251), pool.block_size());
  }
  CHECK(std::set<void*>(blocks.begin(), blocks.end()).size() == n);
  for (std::size_t i = 0; i < n; ++i)
    CHECK(filled_with(blocks[i], pool.block_size(), static_cast<unsigned char>(i % 251)));
  CHECK(pool.in_use().blocks == n);
  CHECK(pool.in_use().chunks == 4);
  for (auto* b : blocks)
    pool.deallocate(b);
}

TEST_CASE("block pool: empty chunks go back, except the last one with room", "[block_pool]") {
  block_pool pool{1'000};
  const auto per_chunk = pool.chunk_capacity();
  std::vector<void*> blocks;
  for (std::size_t i = 0; i < per_chunk * 5; ++i)
    blocks.push_back(pool.allocate());
  REQUIRE(pool.in_use().chunks == 5);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937{7});
  // Half given back in random order: every chunk keeps some blocks in use.
  for (std::size_t i = 0; i < blocks.size() / 2; ++i)
    pool.deallocate(blocks[i]);
  blocks.erase(blocks.begin(), blocks.begin() + static_cast<std::ptrdiff_t>(blocks.size() / 2));
  CHECK(pool.in_use().blocks == blocks.size());
  // A block given back is handed out again before any new chunk is taken.
  std::vector<void*> again;
  for (std::size_t i = 0; i < per_chunk; ++i)
    again.push_back(pool.allocate());
  CHECK(pool.in_use().chunks == 5);
  for (auto* b : again)
    pool.deallocate(b);
  for (auto* b : blocks)
    pool.deallocate(b);
  CHECK(pool.in_use().blocks == 0);
  CHECK(pool.in_use().chunks == 1);
  // The chunk kept serves the next allocation.
  auto* b = pool.allocate();
  CHECK(pool.in_use().chunks == 1);
  pool.deallocate(b);
}

TEST_CASE("block pool: blocks taken on one thread and given back on another", "[block_pool]") {
  block_pool pool{1'120};
  constexpr int rounds = 20'000;
  std::vector<void*> handed(rounds, nullptr);
  std::atomic<int> ready{0};
  std::thread producer{[&] {
    for (int i = 0; i < rounds; ++i) {
      handed[static_cast<std::size_t>(i)] = pool.allocate();
      std::memset(handed[static_cast<std::size_t>(i)], 0x5a, pool.block_size());
      ready.store(i + 1, std::memory_order_release);
    }
  }};
  std::thread consumer{[&] {
    for (int i = 0; i < rounds; ++i) {
      while (ready.load(std::memory_order_acquire) <= i)
        std::this_thread::yield();
      auto* b = handed[static_cast<std::size_t>(i)];
      if (!filled_with(b, pool.block_size(), 0x5a))
        throw std::logic_error("a block changed before it was given back");
      pool.deallocate(b);
    }
  }};
  producer.join();
  consumer.join();
  CHECK(pool.in_use().blocks == 0);
  CHECK(pool.in_use().chunks == 1);
}

TEST_CASE("block pool: a block larger than a chunk is refused", "[block_pool]") {
  CHECK_THROWS_AS(block_pool{block_pool::chunk_size}, std::invalid_argument);
}

TEST_CASE("block pool: allocate_shared with a pool_allocator takes one block, and gives it back",
          "[block_pool]") {
  struct widget {
    std::int64_t values[30];
  };
  const auto before = block_pool::blocks_in_all_pools();
  auto w = std::allocate_shared<widget>(emporium::core::pool_allocator<widget>{});
  w->values[29] = 7;
  CHECK(block_pool::blocks_in_all_pools() == before + 1);
  auto other = w;
  w.reset();
  CHECK(block_pool::blocks_in_all_pools() == before + 1); // still shared
  other.reset();
  CHECK(block_pool::blocks_in_all_pools() == before);
}
