#pragma once
/// The route table of the HTTP API (DESIGN.md §3) and its handlers. Each handler validates its
/// input into a message, makes one call into the actor runtime and encodes the answer.

#include "actors/runtime.hpp"
#include "http/router.hpp"

#include <string>

namespace emporium::http {

struct app {
  actors::runtime& runtime;
  std::string admin_key_hash;                ///< SHA-256 hex of the admin key
  const config::settings* settings = nullptr; ///< limits, shipping defaults, loyalty tiers
  std::string token_key = {}; ///< gateway::token_key(admin_key_hash), set by make_router
};

/// Builds the router for `a`; `a` must outlive it.
router make_router(app& a);

/// Adapts a plain handler function taking the app to a route handler.
handler bind_handler(app& a, void (*fn)(app&, const request&, const path_params&, responder));

// One function per area adds that area's routes (each in its own file).
void add_product_routes(router& r, app& a);  ///< product_routes.cpp
void add_commerce_routes(router& r, app& a); ///< commerce_routes.cpp
void add_search_routes(router& r, app& a);   ///< search_routes.cpp: GET /search
void add_ops_routes(router& r, app& a);      ///< ops_routes.cpp: /metrics, /openapi.json

} // namespace emporium::http
