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

using handler = std::function<void(const request&, const path_params&, responder)>;

struct route {
  std::string method;
  std::string pattern;
  handler handle;
};

struct match_result {
  const route* matched = nullptr;     ///< the route, when found
  path_params params;
  std::vector<std::string> allowed;   ///< methods of the path, when the method did not match
};

class router {
 public:
  void add(std::string method, std::string pattern, handler h);
  match_result match(std::string_view method, std::string_view path) const;
  const std::vector<route>& routes() const { return routes_; }

  /// What the gateway needs to tell tokens apart before any handler runs (set by make_router):
  /// the key session tokens are signed with (gateway::token_key) and the admin key's hash.
  std::string token_key;
  std::string admin_key_hash;
  /// Resolves a session token (the part before its signature) to its customer: `done` gets the
  /// customer id, or "" when it could not; then `dead` says whether the session is unknown or
  /// expired (false when the lookup failed: the database unreachable, a timeout). May call
  /// `done` at once (a cached session) or later from another thread; never blocks the caller.
  std::function<void(std::string token,
                     std::function<void(std::string customer_id, bool dead)> done)>
    verify_session;

 private:
  std::vector<route> routes_;
};

} // namespace emporium::http
