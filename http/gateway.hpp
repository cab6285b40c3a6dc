#pragma once
/// What the gateway layer does to every request before a handler runs and to every answer
/// after: request ids, client identity, route classes, CORS, problem+json `instance`. Plain
/// functions on the plain request/response structs, so they are unit-tested without sockets.

#include "http/message.hpp"
#include "http/rate_limiter.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace emporium::http::gateway {

// -- request ids ----------------------------------------------------------------------------------

/// An X-Request-Id a client may choose: 1 to 128 visible ASCII characters (no blanks, no
/// control characters), so it is safe in a header, a log line and a JSON string.
bool valid_request_id(std::string_view id);

/// A new request id: `req_` and 24 random hex digits.
std::string new_request_id();

/// The request id as an RFC 9457 `instance` (a URI reference): characters not allowed in one
/// are percent-encoded, so a generated id is used as it is.
std::string instance_of(std::string_view request_id);

/// Adds `"instance"` to a problem+json body that has none. Other bodies are left alone.
void add_problem_instance(response& res, std::string_view request_id);

// -- identity and classes ---------------------------------------------------------------------------

/// The route class of a request: login (POST /sessions), read (GET, HEAD, OPTIONS), write.
route_class classify(std::string_view method, std::string_view path);

/// Session tokens as clients hold them: the token the database knows (by its hash), '.', and
/// 32 hex characters of an HMAC-SHA-256 of it under `key` (derived from the admin key hash, which
/// every node of a cluster shares). The gateway can tell a token this server issued from a
/// made-up one without asking anybody.
std::string sign_token(std::string_view token, std::string_view key);

/// The token inside `presented` when it is signed under `key`, else nullopt (made up, or issued
/// before tokens were signed: such a token still authenticates, but has no bucket of its own).
std::optional<std::string_view> signed_token(std::string_view presented, std::string_view key);

/// The key sign_token uses, from the admin key's hash.
std::string token_key(std::string_view admin_key_hash);

struct client_identity {
  std::string bucket; ///< rate-limit key: "t:<sha256 of the token>" or "a:<remote address>"
  std::string shown;  ///< for logs: "token:<first 12 hex of the hash>" or the remote address
};

/// The bearer token's hash when this server issued the token (signed under `token_key`) or it is
/// the admin key (its hash is `admin_key_hash`), else the remote address: a made-up token, one
/// per request, must not buy a fresh bucket each (and a database lookup each before its 401).
/// Logins are always by address.
client_identity identify(const request& req, route_class c, std::string_view token_key,
                         std::string_view admin_key_hash);

// -- CORS -----------------------------------------------------------------------------------------

class cors_policy {
 public:
  explicit cors_policy(std::vector<std::string> origins);

  /// True when any origin is configured: then every answer says `Vary: Origin`.
  bool enabled() const { return !origins_.empty(); }
  /// The value of Access-Control-Allow-Origin for `origin`, or empty when it is not allowed.
  std::string allow_origin(std::string_view origin) const;

  /// True for a CORS preflight: OPTIONS with Origin and Access-Control-Request-Method.
  static bool is_preflight(const request& req);

  /// The answer to OPTIONS on a path whose methods are `methods`: 204 with `Allow`, and for a
  /// preflight from an allowed origin the Access-Control-Allow-* headers.
  response options_answer(const request& req, const std::vector<std::string>& methods) const;

  /// Adds the CORS headers of an ordinary answer to a request from `origin` (may be empty).
  void decorate(response& res, std::string_view origin) const;

 private:
  std::vector<std::string> origins_;
  bool any_ = false;
};

} // namespace emporium::http::gateway
