#pragma once
/// One table of routes: method, path pattern (`/products/{id}`), handler. Matching is by path
/// segments; a path that exists with another method answers 405 with `Allow`.

#include "http/message.hpp"

#include <optional>
#include <string>
#include <vector>

namespace emporium::http {

/// Path parameters, in pattern order.
struct path_params {
  std::vector<std::pair<std::string, std::string>> values;
  const std::string& operator[](std::string_view name) const;
};

struct route_spec;

using handler = std::function<void(const request&, const path_params&, responder)>;

struct route {
  std::string method;
  std::string pattern;
  handler handle;
  const route_spec* spec = nullptr;  ///< its entry in route_table(), when built from it
  std::vector<std::string> segments; ///< the pattern split at '/', once, by router::add
};

struct match_result {
  const route* matched = nullptr; ///< the route, when found
  path_params params;
  std::vector<std::string> allowed; ///< methods of the path, when the method did not match
};

class router {
 public:
  void add(std::string method, std::string pattern, handler h, const route_spec* spec = nullptr);
  match_result match(std::string_view method, std::string_view path) const;
  const std::vector<route>& routes() const { return routes_; }

 private:
  std::vector<route> routes_;
};

} // namespace emporium::http
