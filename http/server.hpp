#pragma once
/// The HTTP/1.1 server on Boost.Beast: a listener and one session per connection, each on its
/// own strand (listener.hpp, session.hpp; only their .cpp files and websocket_session.cpp, the
/// WebSocket of GET /ws, include Beast). Handlers answer through a callback that posts the
/// response back onto the session's strand, so no Asio thread ever waits for an actor, a
/// database or Redis.
///
/// Every request passes the gateway first: a request id (X-Request-Id, echoed on the answer and
/// in every log line), the client's identity and route class, the token-bucket rate limiter
/// (RateLimit-* headers on every answer but the health probes', which are never limited; 429
/// when empty), CORS. Every answer is counted in the metrics and written to the access log.
///
/// Connections: at most http.max_connections in all and http.max_connections_per_address from
/// one client address (a short 503 beyond either); idle, header, body and write deadlines close
/// connections that hold a descriptor without making progress.
///
/// Which thread runs what:
/// - Asio threads (http.threads, running the io_context): accepting, and every session's
///   reading, gateway pass (request id, client address, caller, rate-limit decision in local
///   mode), routing, the handler up to its call into the runtime, encoding the answer and
///   writing it. Each session's work is serialised on its strand.
/// - CAF scheduler threads: the actors. A handler's runtime callback runs there and only hands
///   its result, as a value, to the session's strand (responder::later); the answer is encoded
///   on the strand.
/// - The runtime's blocking workers: PostgreSQL, Redis and password hashing. Nothing on an
///   Asio or CAF thread waits for them.
/// - The limiter thread (rate_limit.mode = redis): decides from Redis and posts the decision
///   back to the session's strand.

#include "config/settings.hpp"
#include "http/gateway.hpp"
#include "http/router.hpp"

#include <cstdint>
#include <memory>

namespace emporium::http {

/// The open-files limit (RLIMIT_NOFILE) before and after raise_open_files_limit().
struct open_files_limit {
  std::uint64_t before = 0; ///< the soft limit the process was started with
  std::uint64_t soft = 0;   ///< the soft limit now
  std::uint64_t hard = 0;
};

/// Raises the soft open-files limit to the hard one: every connection is a descriptor, and the
/// soft limit a service gets by default (1024 under systemd) is far below what the server can
/// hold. Call once at start, before threads open descriptors.
open_files_limit raise_open_files_limit();

/// Descriptors kept for everything but client connections (see the definition for the count).
int reserved_descriptors(int pool_size);

/// http.max_connections when it is not set: the open-files limit minus reserved_descriptors(),
/// at most max_derived_connections (each open connection costs memory too), at least 1.
int derived_max_connections(std::uint64_t open_files, int pool_size);
/// About 7 KiB of memory per idle connection was measured (tests/hostile): 50,000 is ~350 MiB.
inline constexpr int max_derived_connections = 50'000;

struct listener;

class server {
 public:
  /// Uses `s.http`, `s.rate_limit`, `s.redis` (the limiter's store in redis mode) and
  /// `s.auth.admin_key_hash` (the admin key, and the key session tokens are signed with);
  /// `verify` resolves the signed session tokens the gateway meets to their customers.
  server(const config::settings& s, const router& routes, gateway::session_verifier verify);
  ~server();

  /// Binds and listens; throws std::system_error when the address is taken.
  void start();

  /// Runs the I/O threads; returns when stopped and drained.
  void run();

  /// Graceful shutdown: stops accepting (new connections are refused), lets requests already
  /// read finish, closes idle keep-alive connections and each busy one after its last answer
  /// (`Connection: close`). Whatever still runs after `drain_timeout_ms` is cut off. Then run()
  /// returns. Safe to call from any thread, more than once (a later call can only bring the
  /// deadline closer: `stop(0)` cuts the drain short).
  void stop(int drain_timeout_ms);
  /// As above, with http.drain_timeout_ms.
  void stop();

  /// The bound port (useful when configured as 0).
  std::uint16_t port() const;

  /// Connections open now.
  std::size_t connections() const;

  /// True when the last stop() drained every connection before its timeout.
  bool drained_cleanly() const;

 private:
  std::unique_ptr<listener> impl_;
};

} // namespace emporium::http
