#pragma once
/// The listening socket and the io_context behind http::server (server.hpp): accepts
/// connections, applies the connection limits and starts a session (session.hpp) for each.
///
/// Which thread runs what: see server.hpp.

#include "http/session.hpp"

#include <spdlog/spdlog.h>

#include <thread>
#include <vector>

namespace emporium::http {

struct listener {
  listener(const config::settings& s, const router& routes, gateway::session_verifier verify)
    : shared{s, routes, std::move(verify)},
      limiter(std::make_unique<rate_limiter>(s.rate_limit, s.redis)),
      acceptor(net::make_strand(ioc)),
      drain_timer(acceptor.get_executor()),
      poll_timer(acceptor.get_executor()),
      backoff_timer(acceptor.get_executor()) {
    shared.limiter = limiter.get();
  }

  ~listener() {
    // The limiter thread may still post answers onto sessions' strands: stop it while the
    // io_context lives. Then the io_context, whose queued handlers may hold the last references
    // to sessions, which touch `shared` as they go.
    limiter.reset();
  }

  /// Accepts the next connection (on the acceptor's strand), again and again until stopped.
  void accept();

  /// Over a connection limit: a short 503 and close, so the client is told, not left hanging.
  void refuse(socket_type socket, const std::string& text);

  /// At `deadline`, whatever is still open is cut off: run() returns.
  void arm_drain_timer(steady::time_point deadline) {
    drain_timer.expires_at(deadline); // cancels an earlier wait
    drain_timer.async_wait([this](beast::error_code ec) {
      if (ec || drained)
        return;
      spdlog::warn("drain timeout: cutting {} connection(s) still open", shared.connections.load());
      ioc.stop();
    });
  }

  /// Once every connection is gone, nothing keeps run() busy but the drain timer: cancel it.
  void poll_drained() {
    if (shared.connections.load() == 0) {
      drained = true;
      drain_timer.cancel();
      poll_timer.cancel();
      return;
    }
    poll_timer.expires_after(std::chrono::milliseconds(20));
    poll_timer.async_wait([this](beast::error_code ec) {
      if (!ec)
        poll_drained();
    });
  }

  // Declaration order is destruction order reversed: `shared` must outlive the io_context.
  shared_state shared;
  /// Its concurrency hint is the number of threads that run it (http.threads): with one, Asio
  /// skips what only several threads need.
  net::io_context ioc{std::max(1, shared.cfg.threads)};
  std::unique_ptr<rate_limiter> limiter;
  tcp::acceptor acceptor;
  net::steady_timer drain_timer;
  net::steady_timer poll_timer;
  net::steady_timer backoff_timer;      ///< accepting paused while out of descriptors
  steady::time_point exhausted_since{}; ///< start of the episode; epoch when none (acceptor strand)
  std::uint64_t exhausted_failures = 0;
  std::vector<std::thread> threads;
  std::atomic<bool> drained{false};
};

} // namespace emporium::http
