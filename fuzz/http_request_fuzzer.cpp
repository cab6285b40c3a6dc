// Fuzz target: raw bytes from a client, the whole way the server takes them up to the
// handlers' validation, through the server's own code: the Beast parser with the server's
// limits and the answer to a request that does not parse (http/request_conversion.cpp, as
// http/session.cpp calls them), several requests pipelined on one connection, the conversion
// into the handlers' request, the gateway's admission (gateway::admit: parse_target, the client
// address behind a trusted proxy, the caller from Authorization), the router, and the matched
// route's validation (fuzz/request_path.cpp).
//
// The first byte of an input says how its bytes arrive: in reads of 1 to 255 bytes, or (0) in
// one. The session parses after each read (http::feed_parser); cut anywhere, the bytes must
// give the same requests and the same error as when they arrive whole.
//
// What must hold: a request that does not parse is answered 400, 413 or 431 (never dropped in
// silence, never a 5xx); a converted request keeps every header, its name in lower case; the
// client address is an address (X-Forwarded-For cannot smuggle text into the identity); only a
// token signed with the server's key asks for session verification, and only the admin key is
// the admin.

#include "config/net_address.hpp"
#include "config/settings.hpp"
#include "core/ids.hpp"
#include "fuzz/check.hpp"
#include "fuzz/request_path.hpp"
#include "http/gateway.hpp"
#include "http/handler_support.hpp"
#include "http/request_conversion.hpp"

#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace http = emporium::http;
namespace gateway = emporium::http::gateway;

namespace {

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

/// What one connection's bytes parse into: each request's parts, in order, and the error that
/// ended the connection (none when the bytes ran out).
struct parsed {
  struct one {
    std::string method, target, body;
    std::vector<std::pair<std::string, std::string>> fields;
    bool operator==(const one& o) const {
      return method == o.method && target == o.target && body == o.body && fields == o.fields;
    }
  };
  std::vector<one> requests;
  std::vector<http::beast_request> messages;
  boost::beast::error_code ec;
};

/// Parses `in` as the session does (http::feed_parser after each read), the bytes arriving
/// `chunk` at a time (0: all at once): one request after the other until the bytes run out or
/// one is bad. At the end of the bytes the client closes the connection.
parsed parse_connection(std::string_view in, std::size_t chunk,
                        const emporium::config::http_settings& limits) {
  parsed out;
  boost::beast::flat_buffer buffer;
  auto arrive = [&] {
    auto n = chunk == 0 ? in.size() : std::min(chunk, in.size());
    auto b = buffer.prepare(n);
    std::memcpy(b.data(), in.data(), n);
    buffer.commit(n);
    in.remove_prefix(n);
  };
  for (int n = 0; n < 8; ++n) {
    http::beast_request_parser parser;
    http::apply_limits(parser, limits);
    auto step = http::feed_parser(parser, buffer, limits.header_limit, out.ec);
    while (step == http::parse_step::need_more && !in.empty()) {
      arrive();
      step = http::feed_parser(parser, buffer, limits.header_limit, out.ec);
    }
    if (step == http::parse_step::need_more && parser.got_some()) {
      // The client closes the connection in the middle of a request.
      parser.put_eof(out.ec);
      expect(out.ec.failed() || parser.is_done());
      step = out.ec ? http::parse_step::failed : http::parse_step::done;
    }
    if (step != http::parse_step::done)
      return out; // failed (answered, then closed), or nothing more arrived
    auto msg = parser.release();
    parsed::one r{std::string{msg.method_string()}, std::string{msg.target()}, msg.body(), {}};
    for (const auto& f : msg)
      r.fields.emplace_back(std::string{f.name_string()}, std::string{f.value()});
    out.requests.push_back(std::move(r));
    out.messages.push_back(std::move(msg));
  }
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const emporium::config::http_settings limits{};
  static const server_keys keys;
  if (size == 0)
    return 0;
  // The first byte is how the bytes arrive: in pieces of 1 to 255 bytes, or (0) all at once.
  std::size_t chunk = data[0];
  std::string_view in{reinterpret_cast<const char*>(data) + 1, size - 1};
  auto whole = parse_connection(in, 0, limits);
  if (chunk != 0) {
    // However the bytes are cut into reads, the same requests, and an error at the same one.
    // Which error may differ: Beast checks a start line that arrives with bytes after its
    // fault at once (say "bad target"), and one that arrives short only once its header block
    // is complete, which a client that closes first never sends ("partial message"). Both are
    // answered 400.
    auto pieces = parse_connection(in, chunk, limits);
    expect(pieces.requests == whole.requests);
    expect(pieces.ec.failed() == whole.ec.failed());
    expect(pieces.ec == whole.ec || pieces.ec == bhttp::error::partial_message
           || whole.ec == bhttp::error::partial_message);
    if (pieces.ec)
      expect_error_answer(pieces.ec, limits);
  }
  for (auto& msg : whole.messages) {
    std::size_t fields = 0;
    for (auto it = msg.begin(); it != msg.end(); ++it)
      ++fields;
    auto req = http::to_request(std::move(msg), std::string{peer});
    expect(req.headers.size() == fields);
    for (const auto& [name, value] : req.headers)
      for (char c : name)
        expect(!(c >= 'A' && c <= 'Z'));
    expect(!req.method.empty());
    expect(http::method_label(req.method) == req.method
           || http::method_label(req.method) == "other");
    admit_and_route(req, keys);
  }
  if (whole.ec)
    expect_error_answer(whole.ec, limits);
  return 0;
}
