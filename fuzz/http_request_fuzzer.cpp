// Fuzz target: raw bytes from a client, the whole way the server takes them up to the
// handlers' validation, through the server's own code: the Beast parser with the server's
// limits and the answer to a request that does not parse (http/request_conversion.cpp, as
// http/session.cpp calls them), several requests pipelined on one connection, the conversion
// into the handlers' request, the gateway's admission (gateway::admit: parse_target, the client
// address behind a trusted proxy, the caller from Authorization), the router, and the matched
// route's validation (fuzz/request_path.cpp).
//
// What must hold: a request that does not parse is answered 400, 413 or 431 (never dropped in
// silence, never a 5xx); a converted request keeps every header, its name in lower case; the
// client address is an address (X-Forwarded-For cannot smuggle text into the identity); only a
// token signed with the server's key asks for session verification, and only the admin key is
// the admin.

#include "config/net_address.hpp"
#include "config/settings.hpp"
#include "core/ids.hpp"
#include "fuzz/request_path.hpp"
#include "http/gateway.hpp"
#include "http/handler_support.hpp"
#include "http/request_conversion.hpp"

#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace http = emporium::http;
namespace gateway = emporium::http::gateway;

namespace {

/// A check that must hold whatever the input: a violation is a bug, reported as a crash.
void expect(bool ok) {
  if (!ok)
    std::abort();
}

/// The peer is a trusted proxy, so that X-Forwarded-For is believed and parsed.
constexpr std::string_view peer = "10.0.0.1";

struct server_keys {
  std::vector<emporium::config::cidr_block> trusted = gateway::parse_trusted({"10.0.0.0/8"});
  std::string admin_key_hash = emporium::core::sha256_hex("fuzz-admin-key");
  std::string token_key = gateway::token_key(admin_key_hash);
};

/// The answer the session gives a request that fails to parse (its bytes have begun).
void expect_error_answer(boost::beast::error_code ec,
                         const emporium::config::http_settings& limits) {
  auto answer = http::read_error_answer(ec, true, limits);
  expect(answer.has_value());
  expect(answer->status == 400 || answer->status == 413 || answer->status == 431);
  expect(answer->status != 431 || ec == bhttp::error::header_limit
         || ec == bhttp::error::buffer_overflow);
  expect(answer->status != 413 || ec == bhttp::error::body_limit);
}

void admit_and_route(http::request& req, const server_keys& keys) {
  auto in = gateway::admit(req, peer, keys.trusted, keys.token_key, keys.admin_key_hash);
  if (!in.target_ok)
    return; // 400 from the session
  expect(!req.path.empty() && req.path.front() == '/');
  if (!in.probe) {
    const auto& bucket = in.identity.bucket;
    expect(bucket.rfind("a:", 0) == 0 || bucket.rfind("t:", 0) == 0);
    if (bucket.rfind("a:", 0) == 0) {
      // The client address behind the proxy, as an address.
      auto shown = std::string_view{in.identity.shown};
      shown = shown.substr(0, shown.find(' '));
      expect(emporium::config::parse_ip(shown).has_value());
      expect(bucket == "a:" + gateway::address_key(shown));
    }
    auto presented = http::bearer_token(req);
    if (!in.identity.session_token.empty())
      expect(gateway::sign_token(in.identity.session_token, keys.token_key) == presented);
    if (req.who.k == http::caller::kind::admin)
      expect(emporium::core::sha256_hex(presented) == keys.admin_key_hash);
    if (req.header("authorization").empty())
      expect(req.who.k == http::caller::kind::anonymous);
  }
  emporium::fuzz::route_and_validate(req);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const emporium::config::http_settings limits{};
  static const server_keys keys;
  std::string_view in{reinterpret_cast<const char*>(data), size};
  // Like a connection: one request after the other until the bytes run out or one is bad.
  for (int n = 0; n < 8 && !in.empty(); ++n) {
    http::beast_request_parser parser;
    http::apply_limits(parser, limits);
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
    if (!ec && !parser.is_done() && parser.got_some()) {
      // The client closes the connection in the middle of a request.
      parser.put_eof(ec);
      expect(ec.failed() || parser.is_done());
    }
    if (ec) {
      expect_error_answer(ec, limits);
      return 0; // answered, then the connection is closed
    }
    if (!parser.is_done())
      return 0;
    std::size_t fields = 0;
    for (auto it = parser.get().begin(); it != parser.get().end(); ++it)
      ++fields;
    auto req = http::to_request(parser.release(), std::string{peer});
    expect(req.headers.size() == fields);
    for (const auto& [name, value] : req.headers)
      for (char c : name)
        expect(!(c >= 'A' && c <= 'Z'));
    expect(!req.method.empty());
    expect(http::method_label(req.method) == req.method
           || http::method_label(req.method) == "other");
    admit_and_route(req, keys);
  }
  return 0;
}
