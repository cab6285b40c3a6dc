#pragma once
/// The HTTP request and response as handlers see them: plain structs, no Beast, so handlers,
/// the router and their tests compile without the heavy networking headers.

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace emporium::http {

/// Header names are stored lower-case.
using header_map = std::multimap<std::string, std::string>;

struct request {
  std::string method;   ///< upper-case, as sent
  std::string target;   ///< raw request target
  std::string path;     ///< percent-decoded path, without the query
  std::vector<std::pair<std::string, std::string>> query; ///< decoded, in order
  header_map headers;
  std::string body;
  std::string remote;   ///< peer address

  /// The first value of header `name` (lower-case), or empty.
  std::string_view header(std::string_view name) const;
  /// All values of query parameter `name`.
  std::vector<std::string> query_all(std::string_view name) const;
  /// The first value of query parameter `name`, if present.
  const std::string* query_one(std::string_view name) const;
};

struct response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  response& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

/// Hands a response back to the connection. May be called from any thread, exactly once.
using responder = std::function<void(response)>;

/// Splits a request target into decoded path and query; false when the encoding is malformed.
bool parse_target(std::string_view target, std::string& path,
                  std::vector<std::pair<std::string, std::string>>& query);

} // namespace emporium::http
