#pragma once
/// Where an entity lives: entity kind and key → the manager that hosts it. Single-node today:
/// every kind has one local manager. A cluster replaces `manager_for` with a lookup on the ring
/// of nodes (returning a remote manager's handle) without any change to its callers.

#include "actors/types.hpp"

#include <string>
#include <unordered_map>

namespace emporium::actors {

enum class entity_kind { product, customer, cart, order };

class directory {
 public:
  void add_local(entity_kind kind, caf::actor manager) { local_[kind] = std::move(manager); }

  /// The manager responsible for `key`.
  const caf::actor& manager_for(entity_kind kind, const std::string& /*key*/) const {
    return local_.at(kind);
  }

  template <class F>
  void for_each_manager(F&& f) const {
    for (const auto& [kind, mgr] : local_)
      f(mgr);
  }

 private:
  std::unordered_map<entity_kind, caf::actor> local_;
};

} // namespace emporium::actors
