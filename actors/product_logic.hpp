#pragma once
/// The product actor's rules as plain functions, so they are tested without an actor system.

#include "core/model.hpp"

#include <vector>

namespace emporium::actors::product_logic {

/// The invariants every stored product keeps. Empty when `p` is acceptable.
std::vector<field_error> check(const model::product& p);

/// A new product with the draft's fields (id and timestamps are the store's).
model::product from_draft(const std::string& id, const model::product_draft& d);

/// `current` with the engaged fields of `patch` applied. The version is left as it is: the store
/// bumps it when the change commits.
model::product apply(model::product current, const model::product_patch& patch);

/// True when a change conditioned on `expected_version` may go ahead (0 means unconditional).
bool version_matches(const model::product& current, std::int64_t expected_version);

} // namespace emporium::actors::product_logic
