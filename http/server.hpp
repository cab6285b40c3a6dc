#pragma once
/// The HTTP/1.1 server on Boost.Beast: a listener and one session per connection, each on its own
/// strand. Handlers answer through a callback that posts the response back onto the session's
/// strand, so no Asio thread ever waits for an actor, a database or Redis.

#include "config/settings.hpp"
#include "http/router.hpp"

#include <cstdint>
#include <memory>

namespace emporium::http {

class server {
 public:
  server(const config::http_settings& settings, const router& routes);
  ~server();

  /// Binds and listens; throws std::system_error when the address is taken.
  void start();

  /// Runs the I/O threads; returns when stopped and drained.
  void run();

  /// Stops accepting, lets in-flight requests finish (at most `drain_timeout_ms`), closes idle
  /// keep-alive connections. Safe to call from any thread, and from a signal handler's strand.
  void stop(int drain_timeout_ms = 10'000);

  /// The bound port (useful when configured as 0).
  std::uint16_t port() const;

  /// Connections open now.
  std::size_t connections() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace emporium::http
