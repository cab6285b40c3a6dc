// Fuzz target: raw bytes from a client, the whole way the server takes them up to the
// handlers' validation: Beast's request parser with the server's limits (http/session.cpp
// do_read: header_limit, body_limit), several requests pipelined on one connection, the
// conversion into the handlers' request (lower-case header names), parse_target, the router,
// and the matched route's validation (fuzz/request_path.cpp).

#include "config/settings.hpp"
#include "fuzz/request_path.hpp"

#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string_view>

namespace bhttp = boost::beast::http;
namespace net = boost::asio;

namespace {

/// http/session.cpp's to_request, minus the peer address.
emporium::http::request to_request(bhttp::request<bhttp::string_body>&& in) {
  emporium::http::request out;
  out.method = std::string{in.method_string()};
  out.target = std::string{in.target()};
  for (const auto& field : in) {
    std::string name{field.name_string()};
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    out.headers.emplace(std::move(name), std::string{field.value()});
  }
  out.body = std::move(in.body());
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const emporium::config::http_settings limits{};
  std::string_view in{reinterpret_cast<const char*>(data), size};
  // Like a connection: one request after the other until the bytes run out or one is bad.
  for (int n = 0; n < 8 && !in.empty(); ++n) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.header_limit));
    parser.body_limit(limits.body_limit);
    parser.eager(true);
    boost::beast::error_code ec;
    while (!in.empty() && !parser.is_done()) {
      auto used = parser.put(net::buffer(in.data(), in.size()), ec);
      in.remove_prefix(used);
      if (ec == bhttp::error::need_more) {
        ec = {};
        if (used == 0)
          break; // the rest is an incomplete message: the server would wait for more
        continue;
      }
      if (ec)
        break;
    }
    if (ec || !parser.is_done())
      return 0; // the server answers 400/413/431 or waits; nothing reaches a handler
    auto req = to_request(parser.release());
    if (!emporium::http::parse_target(req.target, req.path, req.query))
      continue; // 400 from the gateway
    emporium::fuzz::route_and_validate(req);
  }
  return 0;
}
