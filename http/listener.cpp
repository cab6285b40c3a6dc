#include "http/listener.hpp"

#include "http/problem.hpp"
#include "http/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace emporium::http {

namespace {

/// A connection refused before it is read: the status line, a problem+json body, and close.
std::string refusal_text(const char* detail) {
  auto res = problem(503, detail);
  return "HTTP/1.1 503 Service Unavailable\r\nServer: emporium\r\nContent-Type: " + res.content_type
         + "\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "
         + std::to_string(res.body.size()) + "\r\n\r\n" + res.body;
}

/// The answer to a connection over http.max_connections.
const std::string& refusal() {
  static const std::string text = refusal_text("too many connections");
  return text;
}

/// The answer to a connection over http.max_connections_per_address.
const std::string& address_refusal() {
  static const std::string text = refusal_text("too many connections from this address");
  return text;
}

/// Out of descriptors (or kernel memory): accepting again at once would fail again at once.
bool resource_exhausted(const beast::error_code& ec) {
  return ec == net::error::no_descriptors || ec == net::error::no_buffer_space
         || ec == net::error::no_memory || ec.value() == ENFILE;
}

/// How long accepting pauses when descriptors run out: short enough that clients barely notice
/// once some are free again, long enough that a full process does not spin on accept().
constexpr auto accept_backoff = std::chrono::milliseconds(100);

} // namespace

void listener::accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, socket_type socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor.is_open())
        return;
      if (resource_exhausted(ec)) {
        // One line per episode, however long it lasts; the pending clients wait in the
        // listen backlog until connections close (idle and header timeouts see to that).
        if (exhausted_since == steady::time_point{}) {
          exhausted_since = steady::now();
          spdlog::warn(
            "accept failed: {}; pausing new connections ({} open, "
            "http.max_connections {})",
            ec.message(), shared.connections.load(), shared.max_connections);
        }
        ++exhausted_failures;
        backoff_timer.expires_after(accept_backoff);
        backoff_timer.async_wait([this](beast::error_code wait_ec) {
          if (!wait_ec)
            accept();
        });
        return;
      }
      // A client that gave up before it was accepted (ECONNABORTED and the like): its own
      // business, and a flood of them must not flood the log.
      spdlog::debug("accept failed: {}", ec.message());
      return accept();
    }
    if (exhausted_since != steady::time_point{}) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now()
                                                                      - exhausted_since)
                  .count();
      spdlog::info("accepting again after {} ms out of descriptors ({} attempts paused)", ms,
                   exhausted_failures);
      exhausted_since = {};
      exhausted_failures = 0;
    }
    auto n = shared.connections.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n > static_cast<std::size_t>(shared.max_connections)) {
      shared.connections.fetch_sub(1, std::memory_order_relaxed);
      refuse(std::move(socket), refusal());
      return accept();
    }
    beast::error_code peer_ec;
    auto peer = socket.remote_endpoint(peer_ec);
    std::string remote = peer_ec ? std::string{} : peer.address().to_string();
    // The peer as the gateway sees it, worked out once for the connection and its requests.
    auto who = gateway::peer_of(remote, shared.trusted);
    // Connections from a trusted proxy carry many clients each: only the total limit applies.
    // A peer already gone (no address, so no key) is not counted: its session ends at its first
    // read.
    std::string key = who.trusted ? std::string{} : who.key;
    if (!key.empty() && !shared.add_address(key)) {
      shared.connections.fetch_sub(1, std::memory_order_relaxed);
      refuse(std::move(socket), address_refusal());
      return accept();
    }
    std::make_shared<session>(std::move(socket), shared, std::move(remote), std::move(who),
                              std::move(key))
      ->start();
    accept();
  });
}

void listener::refuse(socket_type socket, const std::string& text) {
  shared.m.connections_refused.inc();
  auto sock = std::make_shared<socket_type>(std::move(socket));
  net::async_write(*sock, net::buffer(text), [sock](beast::error_code, std::size_t) {
    beast::error_code ignored;
    sock->shutdown(socket_type::shutdown_both, ignored);
    sock->close(ignored);
  });
}

server::server(const config::settings& settings, const router& routes,
               gateway::session_verifier verify)
  : impl_(std::make_unique<listener>(settings, routes, std::move(verify))) {}

server::~server() {
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    if (t.joinable())
      t.join();
}

void server::start() {
  auto& a = impl_->acceptor;
  tcp::endpoint ep{net::ip::make_address(impl_->shared.cfg.host), impl_->shared.cfg.port};
  a.open(ep.protocol());
  a.set_option(net::socket_base::reuse_address(true));
  a.bind(ep);
  a.listen(net::socket_base::max_listen_connections);
  const auto& sh = impl_->shared;
  auto files = shared_state::current_open_files_limit();
  auto room = files > static_cast<std::uint64_t>(sh.reserved) ? files - sh.reserved : 0;
  if (sh.cfg.max_connections && static_cast<std::uint64_t>(*sh.cfg.max_connections) > room)
    spdlog::warn(
      "http.max_connections {} does not fit the open-files limit {} ({} kept for "
      "other descriptors): past {} connections, accepting pauses until some close",
      *sh.cfg.max_connections, files, sh.reserved, room);
  spdlog::info("http.max_connections {}{}, {} per address; open-files limit {}", sh.max_connections,
               sh.cfg.max_connections ? "" : " (derived)", sh.cfg.max_connections_per_address,
               files);
  impl_->accept();
}

void server::run() {
  auto n = std::max(1, impl_->shared.cfg.threads);
  for (int i = 1; i < n; ++i)
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  for (auto& t : impl_->threads)
    if (t.joinable())
      t.join();
  impl_->threads.clear();
}

void server::stop() {
  stop(impl_->shared.cfg.drain_timeout_ms);
}

void server::stop(int drain_timeout_ms) {
  net::post(impl_->acceptor.get_executor(), [this, drain_timeout_ms] {
    if (impl_->shared.draining.exchange(true)) {
      // Draining already: a later call may only bring the deadline closer.
      auto deadline = steady::now() + std::chrono::milliseconds(drain_timeout_ms);
      if (!impl_->drained && deadline < impl_->drain_timer.expiry())
        impl_->arm_drain_timer(deadline);
      return;
    }
    beast::error_code ec;
    impl_->acceptor.close(ec); // from now on, connection attempts are refused
    impl_->backoff_timer.cancel();
    std::vector<std::shared_ptr<session>> live;
    {
      std::lock_guard<std::mutex> guard{impl_->shared.mtx};
      for (auto& [ptr, weak] : impl_->shared.sessions)
        if (auto s = weak.lock())
          live.push_back(std::move(s));
    }
    spdlog::info("draining {} connection(s), at most {} ms", live.size(), drain_timeout_ms);
    for (auto& s : live)
      s->drain();
    // Whatever is still running after the drain timeout is cut off.
    impl_->arm_drain_timer(steady::now() + std::chrono::milliseconds(drain_timeout_ms));
    impl_->poll_drained();
  });
}

std::uint16_t server::port() const {
  beast::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

std::size_t server::connections() const {
  return impl_->shared.connections.load();
}

bool server::drained_cleanly() const {
  return impl_->drained.load();
}

open_files_limit raise_open_files_limit() {
  open_files_limit out;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return out;
  out.before = out.soft = rl.rlim_cur;
  out.hard = rl.rlim_max;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0)
      out.soft = rl.rlim_max;
  }
  return out;
}

int reserved_descriptors(int pool_size) {
  // Measured (tests/hostile): 9 descriptors on a server that has served nothing yet (stdio,
  // the listener, epoll, eventfds and timerfds of Asio and CAF); then one PostgreSQL and one
  // Redis connection per worker once used, and the limiter's Redis connection in redis mode.
  // 64 leaves room beyond those for log files, a reconnect while the old socket lingers, and
  // the short-lived sockets of 503 refusals, which must never be the ones that hit EMFILE.
  return 64 + 2 * pool_size;
}

int derived_max_connections(std::uint64_t open_files, int pool_size) {
  auto reserve = static_cast<std::uint64_t>(reserved_descriptors(pool_size));
  if (open_files <= reserve + 1)
    return 1;
  return static_cast<int>(std::min<std::uint64_t>(
    open_files - reserve, static_cast<std::uint64_t>(max_derived_connections)));
}

} // namespace emporium::http
