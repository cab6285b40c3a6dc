#pragma once
/// The route table of the HTTP API (DESIGN.md §3) and its handlers. Each handler validates its
/// input into a message, makes one call into the actor runtime and encodes the answer.

#include "actors/runtime.hpp"
#include "http/router.hpp"

#include <string>

namespace emporium::http {

struct app {
  actors::runtime& runtime;
  std::string admin_key_hash; ///< SHA-256 hex of the admin key
};

/// Builds the router for `a`; `a` must outlive it.
router make_router(app& a);

} // namespace emporium::http
