#pragma once
/// Actors of a kind kept in a block_pool (core/block_pool.hpp) rather than in the general
/// allocator: for the kinds a node holds by the million.
///
/// CAF 0.17 allocates an actor as `new caf::actor_storage<T>`: its control block in the first
/// cache line, the actor right after it, one allocation (caf/actor_storage.hpp). The actor of a
/// product is 1,1xx bytes, which jemalloc rounds up to 1,280. `EMPORIUM_POOLED_ACTOR(T)`
/// specialises `caf::actor_storage<T>` as `pooled_actor_storage<T>`: the same layout (checked
/// below), allocated from the kind's pool at its exact size.
///
/// The specialisation must be visible wherever T is spawned, or that spawn would use CAF's
/// primary template: write the macro right after T's definition, in T's header.

#include "core/block_pool.hpp"

#include <caf/actor_control_block.hpp>
#include <caf/actor_storage.hpp>
#include <caf/config.hpp>

#include <cstddef>
#include <new>
#include <utility>

namespace emporium::actors {

template <class T>
class pooled_actor_storage {
 public:
  template <class... Us>
  pooled_actor_storage(caf::actor_id aid, caf::node_id nid, caf::actor_system* sys, Us&&... xs)
    : ctrl(aid, nid, sys, data_dtor, block_dtor) {
    new (&data) T(std::forward<Us>(xs)...);
  }
  ~pooled_actor_storage() {} // the actor was destroyed by data_dtor
  pooled_actor_storage(const pooled_actor_storage&) = delete;
  pooled_actor_storage& operator=(const pooled_actor_storage&) = delete;

  // pool_allocator asserts that the storage is not over-aligned (the pool aligns to 16); an
  // over-aligned one would take the aligned operator new.
  static void* operator new(std::size_t size) {
    if (size > pool().block_size())
      throw std::bad_alloc();
    return pool().allocate();
  }
  static void operator delete(void* p) noexcept {
    if (p)
      pool().deallocate(p);
  }

  /// The kind's pool: pool_allocator's for the storage, never destroyed (an actor may outlive
  /// static destruction).
  static core::block_pool& pool() { return core::pool_allocator<caf::actor_storage<T>>::pool(); }

  // The layout of caf::actor_storage<T>, on which caf::actor_control_block relies.
  caf::actor_control_block ctrl;
  char pad[CAF_CACHE_LINE_SIZE - sizeof(caf::actor_control_block)];
  union {
    T data;
  };

 private:
  static void data_dtor(caf::abstract_actor* ptr) {
    ptr->on_destroy();
    static_cast<T*>(ptr)->~T();
  }
  static void block_dtor(caf::actor_control_block* ptr) {
    static_assert(sizeof(caf::actor_control_block) < CAF_CACHE_LINE_SIZE);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
    static_assert(offsetof(caf::actor_storage<T>, ctrl) == 0,
                  "caf::actor_control_block::get() needs the control block first");
    static_assert(offsetof(caf::actor_storage<T>, data) == CAF_CACHE_LINE_SIZE,
                  "caf::actor_control_block::get() needs the actor one cache line in");
#pragma GCC diagnostic pop
    delete reinterpret_cast<caf::actor_storage<T>*>(ptr);
  }
};

} // namespace emporium::actors

/// Keeps the actors of class `T` (fully qualified) in a pool of their own; at global scope.
#define EMPORIUM_POOLED_ACTOR(T)                                                \
  namespace caf {                                                               \
  template <>                                                                   \
  class actor_storage<T> : public ::emporium::actors::pooled_actor_storage<T> { \
   public:                                                                      \
    using ::emporium::actors::pooled_actor_storage<T>::pooled_actor_storage;    \
  };                                                                            \
  }
