#pragma once
/// What the fuzz targets share: the route table of the HTTP API and the validation each
/// handler runs on its request before it calls the actor runtime. The handlers themselves need
/// the runtime (CAF), which the fuzzers do not link; the validation they run is the codec
/// functions called here, route by route, with the same arguments.
///
/// `api_routes` must stay the server's table: the test "fuzz: the fuzzers' route table is the
/// server's" (route_table_check.cpp) compares it with http::make_router.

#include "http/message.hpp"
#include "http/router.hpp"

#include <string>
#include <utility>
#include <vector>

namespace emporium::fuzz {

/// (method, pattern) of every route, as http/routes.cpp and the *_routes.cpp files add them.
const std::vector<std::pair<std::string, std::string>>& api_routes();

/// A router with api_routes() and handlers that do nothing.
const http::router& api_router();

/// Routes `req` (its path and query already parsed) and runs the matched route's validation:
/// path ids, query parameters and cursors, conditional headers, Idempotency-Key, JSON body.
void route_and_validate(const http::request& req);

/// Turns 0..n bytes into a string (never fails; for the selectors of the fuzz inputs).
inline std::string text(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

} // namespace emporium::fuzz
