#pragma once
/// Every actor interface of Emporium, as typed_actor aliases, in one place. Messages to an entity
/// carry the entity's key first: a manager routes on it without knowing the message's type.

#include "actors/types.hpp"

#include <string>

namespace emporium::actors {

/// A product: its state lives in the actor while it is active.
using product_actor = caf::typed_actor<
  caf::replies_to<std::string, read_atom>::with<model::product>,
  caf::replies_to<std::string, create_atom, model::product_draft>::with<model::product>,
  /// patch with an expected version (0: any version), answers the new state
  caf::replies_to<std::string, patch_atom, model::product_patch, std::int64_t>::with<model::product>,
  /// a forced failure, for tests of supervision
  caf::replies_to<std::string, crash_atom>::with<bool>,
  caf::reacts_to<passivate_atom>>;

} // namespace emporium::actors
