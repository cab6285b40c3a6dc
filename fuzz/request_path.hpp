#pragma once
/// What the fuzz targets share: the route table of the HTTP API (http/route_table.hpp, the one
/// the server routes with) and the validation each route runs on its request before it calls
/// the actor runtime. The handlers themselves need the runtime (CAF), which the fuzzers do not
/// link; what runs before them is the table's own checks (path ids, query parameters) plus the
/// codec calls the handlers make on headers and bodies, here by operation id.

#include "http/message.hpp"
#include "http/router.hpp"

#include <string>
#include <utility>
#include <vector>

namespace emporium::fuzz {

/// (method, pattern) of every routed entry of the table.
std::vector<std::pair<std::string, std::string>> api_routes();

/// A router over the table with handlers that do nothing.
const http::router& api_router();

/// Routes `req` (its path and query already parsed) and runs the matched route's validation:
/// path ids, query parameters and cursors, conditional headers, Idempotency-Key, JSON body.
void route_and_validate(const http::request& req);

/// Turns 0..n bytes into a string (never fails; for the selectors of the fuzz inputs).
inline std::string text(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

} // namespace emporium::fuzz
