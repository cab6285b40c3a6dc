#pragma once
/// The OpenAPI 3.1 document of the whole HTTP API, served at GET /openapi.json. Its paths are
/// generated from the route table (route_table.hpp), including the contract's routes not served
/// yet (route_spec::routed false); its components (schemas, shared parameters, headers and
/// answers) are written in openapi.cpp.

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

/// The document, as compact JSON text (built once).
const std::string& document();

/// Every method + path the document describes.
std::vector<operation> documented_operations();

} // namespace emporium::http::openapi
