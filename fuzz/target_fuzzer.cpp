// Fuzz target: a request line's method and target, as the gateway and router see them:
// parse_target (percent-decoding, query splitting), the router, and the matched route's query
// parameter and cursor validation. Input: "METHOD TARGET" (the first space splits; no space:
// GET). A body after a newline goes to the route's body validation.

#include "fuzz/request_path.hpp"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto input = emporium::fuzz::text(data, size);
  emporium::http::request req;
  auto nl = input.find('\n');
  auto line = input.substr(0, nl);
  if (nl != std::string::npos)
    req.body = input.substr(nl + 1);
  auto sp = line.find(' ');
  req.method = sp == std::string::npos ? "GET" : line.substr(0, sp);
  req.target = sp == std::string::npos ? line : line.substr(sp + 1);
  if (!emporium::http::parse_target(req.target, req.path, req.query))
    return 0;
  // A decoded path starts with '/', as the router assumes.
  if (req.path.empty() || req.path.front() != '/')
    __builtin_trap();
  emporium::fuzz::route_and_validate(req);
  return 0;
}
