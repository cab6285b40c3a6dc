#pragma once
/// The HTTP/1.1 server on Boost.Beast: a listener and one session per connection, each on its own
/// strand. Handlers answer through a callback that posts the response back onto the session's
/// strand, so no Asio thread ever waits for an actor, a database or Redis.
///
/// Every request passes the gateway first: a request id (X-Request-Id, echoed on the answer and
/// in every log line), the client's identity and route class, the token-bucket rate limiter
/// (RateLimit-* headers on every answer, 429 when empty), CORS. Every answer is counted in the
/// metrics and written to the access log.

#include "config/settings.hpp"
#include "http/router.hpp"

#include <cstdint>
#include <memory>

namespace emporium::http {

class server {
 public:
  /// Uses `s.http`, `s.rate_limit` and `s.redis` (the limiter's store in redis mode).
  server(const config::settings& s, const router& routes);
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
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace emporium::http
