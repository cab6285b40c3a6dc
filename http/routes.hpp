#pragma once
/// The handlers of the HTTP API, bound to the route table (route_table.hpp) by operation id.
/// A handler runs after the gateway resolved the caller and the router checked the route's
/// access, path ids and query parameters: it decodes the body, makes one call into the actor
/// runtime and encodes the answer.

#include "actors/runtime.hpp"
#include "http/gateway.hpp"
#include "http/route_table.hpp"
#include "http/router.hpp"

#include <memory>
#include <string>
#include <vector>

namespace emporium::http {

namespace feeds {
class registry;
}

struct app {
  app(actors::runtime& rt, const config::settings& s);

  actors::runtime& runtime;
  const config::settings& settings; ///< limits, shipping defaults, loyalty tiers, keys
  std::string token_key;            ///< gateway::token_key(settings.auth.admin_key_hash)
  std::string search_key;           ///< search_codec::cursor_key(settings.auth.admin_key_hash)
  /// Feed connections (WebSocket, event streams) open, per client address and per transport.
  std::shared_ptr<feeds::registry> feed_connections;
};

/// What a handler gets: the request (with its caller), its path parameters, its validated query.
using handler_fn = void (*)(app&, const request&, const path_params&, const query_args&, responder);

/// A handler for the table entry whose operation_id is `operation`.
struct binding {
  const char* operation;
  handler_fn fn;
};

/// Builds the router over the route table, every routed entry bound to its handler; throws
/// std::logic_error when an entry has no handler or a handler no entry. `a` must outlive it.
router make_router(app& a);

/// The handlers of each area (each in its own file).
const std::vector<binding>& product_handlers();  ///< product_routes.cpp
const std::vector<binding>& commerce_handlers(); ///< commerce_routes.cpp
const std::vector<binding>& search_handlers();   ///< search_routes.cpp
const std::vector<binding>& ops_handlers();      ///< ops_routes.cpp: probes, metrics, openapi
const std::vector<binding>& feed_handlers();     ///< feed_routes.cpp: /ws, event streams

/// The gateway's session verifier over the runtime's (actors::runtime::authenticate): the one
/// place a session token is checked.
gateway::session_verifier session_verifier(actors::runtime& rt);

/// The caller as the runtime's principal (an empty one for anyone not signed in).
model::principal principal_of(const caller& who);

} // namespace emporium::http
