#pragma once
/// The OpenAPI 3.1 document of the whole HTTP API (DESIGN.md §3), served at GET /openapi.json.
/// It describes every route of the contract, including those not served yet: they are listed
/// in `not_yet_routed`, and a unit test keeps that list and the router's table honest (every
/// routed operation is documented; every documented one is routed or in the list; nothing in
/// the list is routed). The list shrinks as routes land.

#include <string>
#include <vector>

namespace emporium::http::openapi {

struct operation {
  std::string method; ///< upper-case
  std::string path;   ///< the router's pattern, e.g. /carts/{id}/items/{product_id}
  bool operator==(const operation& o) const { return method == o.method && path == o.path; }
  bool operator<(const operation& o) const {
    return path != o.path ? path < o.path : method < o.method;
  }
};

/// Documented in the contract, not in the router yet. Remove an entry when its route lands.
extern const std::vector<operation> not_yet_routed;

/// The document, as compact JSON text (built once).
const std::string& document();

/// Every method + path the document describes.
std::vector<operation> documented_operations();

} // namespace emporium::http::openapi
