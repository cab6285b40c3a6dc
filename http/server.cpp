#include "http/server.hpp"

#include "http/problem.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace emporium::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

class session;

/// What every session shares: settings, routes, the registry used by graceful shutdown.
struct shared_state {
  shared_state(const config::http_settings& c, const router& r) : cfg(c), routes(r) {}
  config::http_settings cfg;
  const router& routes;
  std::atomic<std::size_t> connections{0};
  std::atomic<bool> draining{false};
  std::mutex mtx;
  std::unordered_map<session*, std::weak_ptr<session>> sessions;
};

/// Turns a Beast request into the handlers' plain request.
request to_request(bhttp::request<bhttp::string_body>&& in, const std::string& remote) {
  request out;
  out.method = std::string{in.method_string()};
  out.target = std::string{in.target()};
  for (const auto& field : in) {
    std::string name{field.name_string()};
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    out.headers.emplace(std::move(name), std::string{field.value()});
  }
  out.body = std::move(in.body());
  out.remote = remote;
  return out;
}

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket&& socket, shared_state& shared)
    : stream_(std::move(socket)), shared_(shared), watchdog_(stream_.get_executor()) {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec)
      remote_ = ep.address().to_string();
  }

  ~session() {
    shared_.connections.fetch_sub(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> guard{shared_.mtx};
    shared_.sessions.erase(this);
  }

  void start() {
    {
      std::lock_guard<std::mutex> guard{shared_.mtx};
      shared_.sessions.emplace(this, weak_from_this());
    }
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_next(); });
  }

  /// Graceful shutdown: finish what was read, read nothing new, then close.
  void drain() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->close_after_ = true;
      if (self->queue_.empty() && !self->writing_)
        self->close();
    });
  }

 private:
  struct pending {
    bool ready = false;
    bool head = false;
    unsigned version = 11;
    bool keep_alive = true;
    std::chrono::steady_clock::time_point deadline;
    bhttp::response<bhttp::string_body> res;
  };

  const config::http_settings& cfg() const { return shared_.cfg; }

  // -- reading ------------------------------------------------------------------------------

  void read_next() {
    if (close_after_ || closed_)
      return;
    if (queue_.size() >= static_cast<std::size_t>(cfg().max_pipeline))
      return; // resumed by on_write once the client has read some answers
    reading_ = true;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(cfg().header_limit));
    parser_->body_limit(cfg().body_limit);
    if (buffer_.size() == 0) {
      // Idle keep-alive: wait for the first byte of the next request.
      stream_.expires_after(std::chrono::milliseconds(cfg().idle_timeout_ms));
      stream_.async_read_some(buffer_.prepare(4096),
                              [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                self->buffer_.commit(n);
                                if (ec)
                                  return self->on_read_error(ec, false);
                                self->read_header();
                              });
    } else {
      read_header();
    }
  }

  void read_header() {
    // The whole header block must arrive within the header timeout: a client trickling it is
    // cut off, however often it sends a byte.
    stream_.expires_after(std::chrono::milliseconds(cfg().header_timeout_ms));
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, std::size_t) {
                               if (ec)
                                 return self->on_read_error(ec, true);
                               self->read_body();
                             });
  }

  void read_body() {
    auto& req = parser_->get();
    if (beast::iequals(req[bhttp::field::expect], "100-continue") && queue_.empty() && !writing_) {
      // Only when nothing else is being written: interim answers must not interleave.
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_,
                                                                        req.version());
      writing_ = true;
      stream_.expires_after(std::chrono::milliseconds(cfg().idle_timeout_ms));
      bhttp::async_write(stream_, *cont,
                         [self = shared_from_this(), cont](beast::error_code ec, std::size_t) {
                           self->writing_ = false;
                           if (ec)
                             return self->close();
                           self->read_body_after_continue();
                         });
      return;
    }
    read_body_after_continue();
  }

  void read_body_after_continue() {
    stream_.expires_after(std::chrono::milliseconds(cfg().idle_timeout_ms));
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec)
                          return self->on_read_error(ec, true);
                        self->on_request();
                      });
  }

  void on_read_error(beast::error_code ec, bool started) {
    reading_ = false;
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
      answer_and_close(problem(431, "the request header block exceeds "
                                      + std::to_string(cfg().header_limit) + " bytes"));
    } else if (ec == bhttp::error::body_limit) {
      answer_and_close(problem(413, "the request body exceeds "
                                      + std::to_string(cfg().body_limit) + " bytes"));
    } else if (ec == beast::error::timeout || ec == bhttp::error::end_of_stream
               || ec == net::error::operation_aborted || ec == net::error::connection_reset
               || ec == net::error::eof || !started) {
      // The client left, or idled or trickled past its timeout: nothing to answer.
      close_after_ = true;
      if (queue_.empty() && !writing_)
        close();
    } else {
      answer_and_close(problem(400, "the request is not valid HTTP/1.1: " + ec.message()));
    }
  }

  void answer_and_close(response res) {
    close_after_ = true;
    auto& slot = enqueue(11, false, false);
    fulfil(slot, std::move(res));
  }

  pending& enqueue(unsigned version, bool keep_alive, bool head) {
    auto p = std::make_unique<pending>();
    p->version = version;
    p->keep_alive = keep_alive;
    p->head = head;
    p->deadline = std::chrono::steady_clock::now()
                  + std::chrono::milliseconds(cfg().request_timeout_ms + 1000);
    queue_.push_back(std::move(p));
    arm_watchdog();
    return *queue_.back();
  }

  void on_request() {
    reading_ = false;
    auto beast_req = parser_->release();
    parser_.reset();
    bool keep_alive = beast_req.keep_alive() && !shared_.draining.load();
    bool head = beast_req.method() == bhttp::verb::head;
    auto& slot = enqueue(beast_req.version(), keep_alive, head);
    if (!keep_alive)
      close_after_ = true;
    dispatch(to_request(std::move(beast_req), remote_), slot);
    read_next();
  }

  /// Routes the request and calls its handler, whose answer comes back through `responder`.
  void dispatch(request req, pending& slot) {
    if (!parse_target(req.target, req.path, req.query))
      return fulfil(slot, problem(400, "the request target is malformed"));
    auto m = shared_.routes.match(req.method, req.path);
    if (!m.matched) {
      if (m.allowed.empty())
        return fulfil(slot, problem(404, "no route for " + req.path));
      std::string allow;
      for (const auto& method : m.allowed)
        allow += (allow.empty() ? "" : ", ") + method;
      auto res = problem(405, req.method + " is not allowed here");
      res.header("Allow", allow);
      return fulfil(slot, std::move(res));
    }
    auto self = shared_from_this();
    auto* p = &slot;
    responder respond = [self, p](response res) {
      net::post(self->stream_.get_executor(),
                [self, p, res = std::move(res)]() mutable { self->fulfil(*p, std::move(res)); });
    };
    try {
      m.matched->handle(req, m.params, std::move(respond));
    } catch (const std::exception& e) {
      spdlog::error("handler for {} {} threw: {}", req.method, m.matched->pattern, e.what());
      fulfil(slot, problem(500, "internal error"));
    }
  }

  // -- writing ------------------------------------------------------------------------------

  /// Records the answer of `slot` (on the strand); answers leave in request order.
  void fulfil(pending& slot, response res) {
    // The slot may be gone already: the watchdog answered it, or the connection closed.
    bool known = std::any_of(queue_.begin(), queue_.end(),
                             [&slot](const auto& p) { return p.get() == &slot; });
    if (!known || slot.ready)
      return;
    auto& out = slot.res;
    out.version(slot.version);
    out.result(static_cast<unsigned>(res.status));
    out.set(bhttp::field::server, "emporium");
    if (!res.content_type.empty())
      out.set(bhttp::field::content_type, res.content_type);
    for (auto& [k, v] : res.headers)
      out.insert(k, v);
    out.keep_alive(slot.keep_alive && !close_after_last(slot));
    if (res.status == 304 || res.status == 204) {
      out.body().clear();
    } else {
      out.body() = std::move(res.body);
      out.prepare_payload();
      if (slot.head)
        out.body().clear(); // Content-Length stays that of the GET
    }
    slot.ready = true;
    flush();
  }

  /// True when `slot` is the last answer this connection will send.
  bool close_after_last(const pending& slot) const {
    return close_after_ && queue_.back().get() == &slot;
  }

  void flush() {
    if (writing_ || closed_ || queue_.empty() || !queue_.front()->ready)
      return;
    writing_ = true;
    stream_.expires_after(std::chrono::milliseconds(cfg().idle_timeout_ms));
    auto& res = queue_.front()->res;
    bhttp::async_write(stream_, res, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_write(ec);
    });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    if (ec)
      return close();
    bool last = !queue_.front()->res.keep_alive();
    queue_.pop_front();
    arm_watchdog();
    if (last)
      return close();
    if (!queue_.empty()) {
      flush();
    } else if (close_after_ && !reading_) {
      return close();
    }
    if (!reading_ && !close_after_)
      read_next();
  }

  // -- deadlines ----------------------------------------------------------------------------

  /// The backstop behind every request's deadline: if the oldest request has no answer past its
  /// deadline (the runtime times requests out earlier, so this should never fire), it gets 504.
  void arm_watchdog() {
    if (queue_.empty() || closed_) {
      watchdog_.cancel();
      return;
    }
    watchdog_.expires_at(queue_.front()->deadline);
    watchdog_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->queue_.empty() || self->closed_)
        return;
      auto& head = *self->queue_.front();
      if (!head.ready && std::chrono::steady_clock::now() >= head.deadline)
        self->fulfil(head, problem(504, "the request did not complete in time"));
      else
        self->arm_watchdog();
    });
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    watchdog_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  shared_state& shared_;
  net::steady_timer watchdog_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::deque<std::unique_ptr<pending>> queue_;
  std::string remote_;
  bool reading_ = false;
  bool writing_ = false;
  bool close_after_ = false;
  bool closed_ = false;
};

} // namespace

struct server::impl {
  impl(const config::http_settings& cfg, const router& routes)
    : shared{cfg, routes}, acceptor(net::make_strand(ioc)), drain_timer(acceptor.get_executor()) {}

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open())
          return;
        spdlog::warn("accept failed: {}", ec.message());
        return accept();
      }
      auto n = shared.connections.fetch_add(1, std::memory_order_relaxed) + 1;
      if (n > static_cast<std::size_t>(shared.cfg.max_connections)) {
        shared.connections.fetch_sub(1, std::memory_order_relaxed);
        refuse(std::move(socket));
      } else {
        std::make_shared<session>(std::move(socket), shared)->start();
      }
      accept();
    });
  }

  /// Over the connection limit: a short 503 and close, so the client is told, not left hanging.
  void refuse(tcp::socket socket) {
    auto sock = std::make_shared<tcp::socket>(std::move(socket));
    static const std::string answer =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
      "Retry-After: 1\r\nConnection: close\r\nContent-Length: 109\r\n\r\n"
      R"({"type":"/problems/unavailable","title":"Service unavailable","status":503,"detail":"too many connections"})";
    net::async_write(*sock, net::buffer(answer), [sock](beast::error_code, std::size_t) {
      beast::error_code ignored;
      sock->shutdown(tcp::socket::shutdown_both, ignored);
      sock->close(ignored);
    });
  }

  /// Once every connection is gone, nothing keeps run() busy but the drain timer: cancel it.
  void poll_drained() {
    if (shared.connections.load() == 0) {
      drain_timer.cancel();
      return;
    }
    poll_timer.expires_after(std::chrono::milliseconds(20));
    poll_timer.async_wait([this](beast::error_code ec) {
      if (!ec)
        poll_drained();
    });
  }

  net::io_context ioc;
  shared_state shared;
  tcp::acceptor acceptor;
  net::steady_timer drain_timer;
  net::steady_timer poll_timer{acceptor.get_executor()};
  std::vector<std::thread> threads;
};

server::server(const config::http_settings& settings, const router& routes)
  : impl_(std::make_unique<impl>(settings, routes)) {}

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

void server::stop(int drain_timeout_ms) {
  net::post(impl_->acceptor.get_executor(), [this, drain_timeout_ms] {
    if (impl_->shared.draining.exchange(true))
      return;
    beast::error_code ec;
    impl_->acceptor.close(ec);
    std::vector<std::shared_ptr<session>> live;
    {
      std::lock_guard<std::mutex> guard{impl_->shared.mtx};
      for (auto& [ptr, weak] : impl_->shared.sessions)
        if (auto s = weak.lock())
          live.push_back(std::move(s));
    }
    for (auto& s : live)
      s->drain();
    // Whatever is still running after the drain timeout is cut off.
    impl_->drain_timer.expires_after(std::chrono::milliseconds(drain_timeout_ms));
    impl_->drain_timer.async_wait([this](beast::error_code ec) {
      if (!ec)
        impl_->ioc.stop();
    });
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

} // namespace emporium::http
