#pragma once
/// What the gateway layer does to every request before a handler runs and to every answer
/// after: request ids, client identity, route classes, CORS, problem+json `instance`. Plain
/// functions on the plain request/response structs, so they are unit-tested without sockets.

#include "config/net_address.hpp"
#include "http/message.hpp"
#include "http/rate_limiter.hpp"
#include "http/route_table.hpp"

#include <functional>

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

// -- identity and classes
// ---------------------------------------------------------------------------

/// The route table's entry of a request (method and decoded path), or nullptr.
const route_spec* route_of(std::string_view method, std::string_view path);

/// The route class of a request, from its route's entry (route_table.hpp: class_of).
route_class classify(std::string_view method, std::string_view path);

/// GET or HEAD of a route the table marks as a probe (/healthz, /readyz, /metrics): a load
/// balancer's or Prometheus's. Never rate limited: behind a balancer every client shares the
/// balancer's address, and a busy one must not make the checks fail.
bool is_health_probe(std::string_view method, std::string_view path);

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

/// The client's address (canonical text). The peer's own address, unless the peer is in
/// `trusted` (http.trusted_proxies): then the right-most X-Forwarded-For entry that is not
/// itself trusted, walking left over trusted ones; the left-most when all are trusted. An entry
/// that is not an address (`unknown`, garbage) ends the walk at the last trusted hop, so a
/// client cannot buy a fresh identity with it. `forwarded_for` holds the header's values in
/// the order received (several headers are one list). Entries may carry a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
std::string client_address(std::string_view peer,
                           const std::vector<std::string_view>& forwarded_for,
                           const std::vector<config::cidr_block>& trusted);

/// The X-Forwarded-For values of `req`, in order.
std::vector<std::string_view> forwarded_for(const request& req);

/// What one client is, for rate limits and connection counts: an IPv4 address as it is, an IPv6
/// address as its /64 (`2001:db8:1:2::/64`; one subscriber usually has a whole /64).
std::string address_key(std::string_view address);

/// http.trusted_proxies parsed (validated at start, so nothing is dropped here).
std::vector<config::cidr_block> parse_trusted(const std::vector<std::string>& blocks);

/// The rate-limit bucket of the admin key. Named, not keyed by the key's hash: bucket names are
/// Redis key names (rate_limit mode redis), and the hash is what the server's other keys derive
/// from.
inline constexpr std::string_view admin_bucket = "t:admin";

struct client_identity {
  std::string bucket; ///< rate-limit key: "c:<customer id>", "t:admin" or "a:<address key>"
  std::string shown;  ///< for logs: "customer:<id>", "admin" or the address
  /// A token this server signed whose session is not verified yet: the caller asks the runtime
  /// and, when it is live, uses customer_identity(); until then (and when it is not) `bucket` is
  /// the address's. Held in memory only: never logged.
  std::string session_token;
  /// The caller for the handlers: anonymous, malformed, admin or unknown here; a customer once
  /// the session is verified (customer_identity).
  caller who;
};

/// Verifies a session token (the part before its signature) for the gateway: `done` gets the
/// customer id, or "" when it could not; then `dead` says whether the session is unknown or
/// expired (false when the lookup failed: the database unreachable, a timeout). May call `done`
/// at once (a cached session) or later from another thread; never blocks the caller.
/// A verification's answer: the customer and when the session expires (ms since the epoch), or
/// an empty customer (`dead`: the token is unknown or expired, not just unverifiable now).
using verified_fn =
  std::function<void(std::string customer_id, bool dead, std::int64_t expires_at_ms)>;
using session_verifier = std::function<void(std::string token, verified_fn done)>;

/// Resolves the caller once per request, for the limiter and the handlers. Logins and
/// sign-ups are by address. Otherwise the admin key has a bucket of its own; a token
/// this server signed asks for verification (session_token) and meanwhile is the address; any
/// other token and no token are the address: a made-up token, one per request, must not buy a
/// fresh bucket each, nor a lookup each before its 401. Keying a verified session by its
/// customer, not its token, gives one customer one bucket however many sessions they open.
/// `known_key` is address_key(client_address) when the caller has it already ("": worked out).
client_identity identify(const request& req, route_class c, std::string_view token_key,
                         std::string_view admin_key_hash, std::string_view client_address,
                         std::string_view known_key = "");

/// What the gateway learns of a request before the limiter: its target parsed into `req`
/// (path, query), whether it is a probe, its route class and its client identity; `req.who`
/// is set to the caller as far as it is known without the runtime.
struct admission {
  bool target_ok = false; ///< the target parsed; otherwise the request is answered 400
  bool probe = false;     ///< never limited
  route_class cls = route_class::read;
  client_identity identity;
};

/// The feeds' paths (/ws, /.../events): their token may come as `?access_token=` instead of
/// an Authorization header, which browsers cannot set on a WebSocket or an EventSource. admit()
/// reads it as the header then (the access log names routes, never targets: it is not logged).
bool is_feed_path(std::string_view path);

/// What a connection's peer is for the gateway, worked out once per connection: its address
/// as client_address() gives it when no proxy vouches for another, whether it is a trusted
/// proxy (then each request's X-Forwarded-For is read), and that address's key.
struct peer_info {
  std::string address;
  bool trusted = false;
  std::string key; ///< address_key(address)
};

peer_info peer_of(std::string_view peer, const std::vector<config::cidr_block>& trusted);

admission admit(request& req, const peer_info& peer, const std::vector<config::cidr_block>& trusted,
                std::string_view token_key, std::string_view admin_key_hash);

/// The same, for a peer not worked out beforehand.
admission admit(request& req, std::string_view peer, const std::vector<config::cidr_block>& trusted,
                std::string_view token_key, std::string_view admin_key_hash);

/// The identity of a verified customer session.
client_identity customer_identity(std::string_view customer_id);

/// The rate-limit bucket of a caller the gateway admitted: its customer's, the admin's, or its
/// address's (`address_key`, address_key() of the client address) for anyone else.
std::string bucket_of(const caller& who, std::string_view address_key);

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
