#include "http/server.hpp"

#include "http/gateway.hpp"
#include "http/logging.hpp"
#include "http/metrics.hpp"
#include "http/problem.hpp"
#include "http/rate_limiter.hpp"
#include "persistence/ids.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <sys/resource.h>

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
using steady = std::chrono::steady_clock;

namespace {

class session;

/// What every session shares: settings, routes, the gateway, the registry used by graceful
/// shutdown. Outlives the io_context (see server::impl), so sessions destroyed with it may
/// still touch it.
struct shared_state {
  shared_state(const config::settings& s, const router& r)
    : cfg(s.http),
      routes(r),
      cors(s.http.cors_origins),
      m(metrics::http()),
      trusted(gateway::parse_trusted(s.http.trusted_proxies)),
      reserved(reserved_descriptors(s.postgres.pool_size)),
      max_connections(s.http.max_connections.value_or(
        derived_max_connections(current_open_files_limit(), s.postgres.pool_size))) {}

  static std::uint64_t current_open_files_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
      return 1u << 20;
    return rl.rlim_cur;
  }

  /// Counts a connection from `key` (gateway::address_key); false when that address has
  /// http.max_connections_per_address open already (then nothing is counted).
  bool add_address(const std::string& key) {
    std::lock_guard<std::mutex> guard{address_mtx};
    auto& n = per_address[key];
    if (n >= cfg.max_connections_per_address)
      return false;
    ++n;
    return true;
  }

  void remove_address(const std::string& key) {
    std::lock_guard<std::mutex> guard{address_mtx};
    auto it = per_address.find(key);
    if (it != per_address.end() && --it->second <= 0)
      per_address.erase(it);
  }

  /// True when the runtime found the session of the token with this hash dead lately. A dead
  /// session never comes back to life, and without this each request carrying its token would
  /// cost a lookup before the limiter charges it to its address.
  bool known_dead(const std::string& hash) {
    std::lock_guard<std::mutex> guard{dead_mtx};
    auto it = dead_sessions.find(hash);
    if (it == dead_sessions.end())
      return false;
    if (it->second <= steady::now()) {
      dead_sessions.erase(it);
      return false;
    }
    return true;
  }

  void mark_dead(const std::string& hash) {
    std::lock_guard<std::mutex> guard{dead_mtx};
    if (dead_sessions.size() >= max_dead_sessions)
      dead_sessions.clear(); // bounded memory; the next requests look their tokens up again
    dead_sessions[hash] = steady::now() + dead_session_ttl;
  }

  static constexpr std::size_t max_dead_sessions = 10'000;
  static constexpr auto dead_session_ttl = std::chrono::seconds(60);

  config::http_settings cfg;
  const router& routes;
  gateway::cors_policy cors;
  metrics::http_families& m;
  std::vector<config::cidr_block> trusted;
  int reserved;        ///< descriptors kept for all but clients
  int max_connections; ///< http.max_connections, or derived from the open-files limit
  rate_limiter* limiter = nullptr; ///< owned by server::impl
  std::atomic<std::size_t> connections{0};
  std::atomic<bool> draining{false};
  std::mutex mtx;
  std::unordered_map<session*, std::weak_ptr<session>> sessions;
  std::mutex address_mtx;
  std::unordered_map<std::string, int> per_address; ///< open connections by address key
  std::mutex dead_mtx;
  std::unordered_map<std::string, steady::time_point> dead_sessions; ///< token hash → until
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

/// The method as a metrics label: the known ones, else "other" (clients choose methods; the
/// label set must stay bounded).
std::string method_label(std::string_view m) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
    if (m == known)
      return std::string{m};
  return "other";
}

class session : public std::enable_shared_from_this<session> {
 public:
  /// `remote` is the peer's address; `address_key` is what it counts against
  /// http.max_connections_per_address ("" when not counted: a trusted proxy).
  session(tcp::socket&& socket, shared_state& shared, std::string remote, std::string address_key)
    : stream_(std::move(socket)),
      shared_(shared),
      watchdog_(stream_.get_executor()),
      remote_(std::move(remote)),
      address_key_(std::move(address_key)) {
    shared_.m.connections.inc();
  }

  ~session() {
    queue_.clear(); // counts the unanswered requests out of the in-flight gauge
    if (!address_key_.empty())
      shared_.remove_address(address_key_);
    shared_.m.connections.dec();
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
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->on_drain(); });
  }

 private:
  struct pending {
    pending() { metrics::http().in_flight.inc(); }
    ~pending() { metrics::http().in_flight.dec(); }
    pending(const pending&) = delete;
    pending& operator=(const pending&) = delete;

    std::uint64_t seq = 0;
    bool ready = false;
    bool head = false;
    unsigned version = 11;
    bool keep_alive = true;
    steady::time_point deadline;
    bhttp::response<bhttp::string_body> res;

    // What the gateway learnt about the request, for the answer's headers, metrics and logs.
    steady::time_point started;
    std::string request_id;
    std::string method = "-";
    std::string route = "unmatched";
    std::string client;
    std::string origin;
    const char* route_class = "";
    std::optional<limit_decision> limit; ///< none for health probes: never limited
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
    // The whole body must arrive within the body timeout (an absolute deadline, like the
    // header's): a client trickling it holds the connection no longer, however often it sends.
    stream_.expires_after(std::chrono::milliseconds(cfg().body_timeout_ms));
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

  /// A protocol error: the answer goes after those already queued, then the connection closes.
  void answer_and_close(response res) {
    close_after_ = true;
    auto& slot = enqueue(11, false, false);
    if (parser_ && parser_->is_header_done()) {
      // The header was read (a body over the limit): keep what identifies the request.
      const auto& h = parser_->get();
      auto m = h.method_string();
      slot.method = method_label(std::string_view{m.data(), m.size()});
      auto id = h["X-Request-Id"];
      if (gateway::valid_request_id(std::string_view{id.data(), id.size()}))
        slot.request_id = std::string{id.data(), id.size()};
    }
    fulfil(slot.seq, std::move(res));
  }

  pending& enqueue(unsigned version, bool keep_alive, bool head) {
    auto p = std::make_unique<pending>();
    p->seq = next_seq_++;
    p->version = version;
    p->keep_alive = keep_alive;
    p->head = head;
    p->started = steady::now();
    p->deadline = p->started + std::chrono::milliseconds(cfg().request_timeout_ms + 1000);
    p->request_id = gateway::new_request_id();
    queue_.push_back(std::move(p));
    arm_watchdog();
    return *queue_.back();
  }

  pending* find(std::uint64_t seq) {
    for (auto& p : queue_)
      if (p->seq == seq)
        return p.get();
    return nullptr;
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
    admit(to_request(std::move(beast_req), remote_), slot);
    read_next();
  }

  // -- the gateway --------------------------------------------------------------------------

  /// Request id, CORS origin, the client's identity, then the rate limiter; the request
  /// continues in `dispatch` once the limiter has decided (at once in local mode, from the
  /// limiter thread through this strand in redis mode). Health probes skip the limiter. A token
  /// this server signed is first verified by the runtime (at once from its session cache, else
  /// by a lookup whose answer comes back through this strand), so that a live session is
  /// limited as its customer.
  void admit(request req, pending& slot) {
    slot.method = method_label(req.method);
    auto id = req.header("x-request-id");
    if (gateway::valid_request_id(id))
      slot.request_id = std::string{id};
    if (shared_.cors.enabled())
      slot.origin = std::string{req.header("origin")};
    bool target_ok = parse_target(req.target, req.path, req.query);
    std::string_view path = target_ok ? std::string_view{req.path} : "";
    auto address = gateway::client_address(remote_, gateway::forwarded_for(req), shared_.trusted);
    if (gateway::is_health_probe(req.method, path)) {
      slot.client = std::move(address);
      slot.route_class = "probe";
      return dispatch(std::move(req), target_ok, slot.seq, std::nullopt);
    }
    auto cls = gateway::classify(req.method, path);
    auto who = gateway::identify(req, cls, shared_.routes.token_key, shared_.routes.admin_key_hash,
                                 address);
    slot.client = who.shown;
    slot.route_class = to_string(cls);
    auto seq = slot.seq;
    if (who.session_token.empty() || !shared_.routes.verify_session)
      return limit(std::move(req), target_ok, seq, cls, std::move(who.bucket));
    auto token = std::move(who.session_token);
    who.session_token.clear();
    auto hash = persistence::sha256_hex(token);
    if (shared_.known_dead(hash))
      return limit(std::move(req), target_ok, seq, cls, std::move(who.bucket));
    shared_.routes.verify_session(
      std::move(token),
      [self = shared_from_this(), req = std::move(req), target_ok, seq, cls,
       bucket = std::move(who.bucket), hash = std::move(hash)](std::string customer,
                                                               bool dead) mutable {
        if (dead)
          self->shared_.mark_dead(hash);
        net::dispatch(self->stream_.get_executor(),
                      [self, req = std::move(req), target_ok, seq, cls, bucket = std::move(bucket),
                       customer = std::move(customer)]() mutable {
                        if (!customer.empty()) {
                          auto c = gateway::customer_identity(customer);
                          bucket = std::move(c.bucket);
                          if (auto* slot = self->find(seq))
                            slot->client = std::move(c.shown);
                        }
                        self->limit(std::move(req), target_ok, seq, cls, std::move(bucket));
                      });
      });
  }

  void limit(request req, bool target_ok, std::uint64_t seq, route_class cls, std::string bucket) {
    std::string key = std::string{to_string(cls)} + ":" + bucket;
    if (auto d = shared_.limiter->try_now(cls, key))
      return dispatch(std::move(req), target_ok, seq, *d);
    shared_.limiter->submit(
      cls, std::move(key),
      [self = shared_from_this(), req = std::move(req), target_ok, seq](limit_decision d) mutable {
        net::post(self->stream_.get_executor(),
                  [self, req = std::move(req), target_ok, seq, d]() mutable {
                    self->dispatch(std::move(req), target_ok, seq, d);
                  });
      });
  }

  /// Routes the request and calls its handler, whose answer comes back through `respond`.
  void dispatch(request req, bool target_ok, std::uint64_t seq,
                const std::optional<limit_decision>& d) {
    auto* slot = find(seq);
    if (!slot || slot->ready || closed_)
      return; // answered meanwhile (the watchdog), or the client is gone
    slot->limit = d;
    if (d && !d->allowed) {
      shared_.m.rate_limited.with({slot->route_class}).inc();
      auto res = problem(429, "too many requests from this client; retry after "
                                + std::to_string(d->retry_after_s) + " s");
      res.header("Retry-After", std::to_string(d->retry_after_s));
      return fulfil(seq, std::move(res));
    }
    if (!target_ok)
      return fulfil(seq, problem(400, "the request target is malformed"));
    auto m = shared_.routes.match(req.method, req.path);
    if (!m.matched) {
      if (m.allowed.empty())
        return fulfil(seq, problem(404, "no route for " + req.path));
      slot->route = shared_.routes.match(m.allowed.front(), req.path).matched->pattern;
      if (req.method == "OPTIONS")
        return fulfil(seq, shared_.cors.options_answer(req, m.allowed));
      std::string allow;
      for (const auto& method : m.allowed)
        allow += (allow.empty() ? "" : ", ") + method;
      auto res = problem(405, req.method + " is not allowed here");
      res.header("Allow", allow);
      return fulfil(seq, std::move(res));
    }
    slot->route = m.matched->pattern;
    auto self = shared_from_this();
    responder respond = [self, seq](response res) {
      net::post(self->stream_.get_executor(), [self, seq, res = std::move(res)]() mutable {
        self->fulfil(seq, std::move(res));
      });
    };
    logging::request_scope scope{slot->request_id};
    try {
      m.matched->handle(req, m.params, std::move(respond));
    } catch (const std::exception& e) {
      spdlog::error("handler for {} {} threw: {}", req.method, m.matched->pattern, e.what());
      fulfil(seq, problem(500, "internal error"));
    }
  }

  /// What every answer gets: the request id, the rate limit's state, CORS, the problem's
  /// instance; then it is counted and logged.
  void finish(pending& slot, response& res) {
    res.header("X-Request-Id", slot.request_id);
    if (slot.limit) {
      res.header("RateLimit-Limit", std::to_string(slot.limit->limit));
      res.header("RateLimit-Remaining", std::to_string(slot.limit->remaining));
      res.header("RateLimit-Reset", std::to_string(slot.limit->reset_s));
    }
    shared_.cors.decorate(res, slot.origin);
    gateway::add_problem_instance(res, slot.request_id);

    auto elapsed = std::chrono::duration<double>(steady::now() - slot.started).count();
    metrics::label_values labels{slot.method, slot.route, metrics::status_class(res.status)};
    shared_.m.requests.with(labels).inc();
    shared_.m.duration.with(labels).observe(elapsed);
    bool no_body = slot.head || res.status == 204 || res.status == 304;
    logging::access_entry e;
    e.request_id = slot.request_id;
    e.method = slot.method;
    e.route = slot.route;
    e.status = res.status;
    e.duration_ms = elapsed * 1000.0;
    e.bytes = no_body ? 0 : res.body.size();
    e.client = slot.client.empty() ? std::string_view{remote_} : std::string_view{slot.client};
    e.route_class = slot.route_class;
    e.rate_limited_locally = slot.limit && slot.limit->local_fallback;
    logging::access(e);
  }

  // -- writing ------------------------------------------------------------------------------

  /// Records the answer of request `seq` (on the strand); answers leave in request order.
  void fulfil(std::uint64_t seq, response res) {
    // The request may be gone already: the watchdog answered it, or the connection closed.
    auto* slot = find(seq);
    if (!slot || slot->ready)
      return;
    finish(*slot, res);
    auto& out = slot->res;
    out.version(slot->version);
    out.result(static_cast<unsigned>(res.status));
    out.set(bhttp::field::server, "emporium");
    if (!res.content_type.empty())
      out.set(bhttp::field::content_type, res.content_type);
    for (auto& [k, v] : res.headers)
      out.insert(k, v);
    out.keep_alive(slot->keep_alive && !close_after_last(*slot));
    if (res.status == 304 || res.status == 204) {
      out.body().clear();
    } else {
      out.body() = std::move(res.body);
      out.prepare_payload();
      if (slot->head)
        out.body().clear(); // Content-Length stays that of the GET
    }
    slot->ready = true;
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
    if (!queue_.empty())
      return flush();
    // Nothing left to send. When closing was decided (drain, Connection: close, a protocol
    // error), close now, even if a read for a next request is pending: it will never be served.
    if (close_after_)
      return close();
    if (!reading_)
      read_next();
  }

  // -- shutdown and deadlines -----------------------------------------------------------------

  void on_drain() {
    close_after_ = true;
    if (closed_)
      return;
    // A request whose header has arrived is accepted: it is read to its end and answered.
    bool receiving = reading_ && parser_ && parser_->is_header_done();
    if (queue_.empty() && !writing_ && !receiving)
      return close();
    // The last answer already waiting says `Connection: close` (unless it is on the wire).
    if (queue_.empty() || receiving)
      return;
    auto& back = *queue_.back();
    bool on_the_wire = writing_ && queue_.size() == 1;
    if (back.ready && !on_the_wire)
      back.res.keep_alive(false);
  }

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
      if (!head.ready && steady::now() >= head.deadline)
        self->fulfil(head.seq, problem(504, "the request did not complete in time"));
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
  std::uint64_t next_seq_ = 1;
  std::string remote_;
  std::string address_key_;
  bool reading_ = false;
  bool writing_ = false;
  bool close_after_ = false;
  bool closed_ = false;
};

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

struct server::impl {
  impl(const config::settings& s, const router& routes)
    : shared{s, routes},
      limiter(std::make_unique<rate_limiter>(s.rate_limit, s.redis)),
      acceptor(net::make_strand(ioc)),
      drain_timer(acceptor.get_executor()),
      poll_timer(acceptor.get_executor()),
      backoff_timer(acceptor.get_executor()) {
    shared.limiter = limiter.get();
  }

  ~impl() {
    // The limiter thread may still post answers onto sessions' strands: stop it while the
    // io_context lives. Then the io_context, whose queued handlers may hold the last references
    // to sessions, which touch `shared` as they go.
    limiter.reset();
  }

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open())
          return;
        if (resource_exhausted(ec)) {
          // One line per episode, however long it lasts; the pending clients wait in the
          // listen backlog until connections close (idle and header timeouts see to that).
          if (exhausted_since == steady::time_point{}) {
            exhausted_since = steady::now();
            spdlog::warn("accept failed: {}; pausing new connections ({} open, "
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
      // Connections from a trusted proxy carry many clients each: only the total limit applies.
      // A peer already gone (no address) is not counted: its session ends at its first read.
      std::string key;
      auto ip = config::parse_ip(remote);
      bool from_proxy = ip && std::any_of(shared.trusted.begin(), shared.trusted.end(),
                                          [&](const config::cidr_block& b) { return b.contains(*ip); });
      if (!from_proxy && !remote.empty()) {
        key = gateway::address_key(remote);
        if (!shared.add_address(key)) {
          shared.connections.fetch_sub(1, std::memory_order_relaxed);
          refuse(std::move(socket), address_refusal());
          return accept();
        }
      }
      std::make_shared<session>(std::move(socket), shared, std::move(remote), std::move(key))
        ->start();
      accept();
    });
  }

  /// Over a connection limit: a short 503 and close, so the client is told, not left hanging.
  void refuse(tcp::socket socket, const std::string& text) {
    shared.m.connections_refused.inc();
    auto sock = std::make_shared<tcp::socket>(std::move(socket));
    net::async_write(*sock, net::buffer(text), [sock](beast::error_code, std::size_t) {
      beast::error_code ignored;
      sock->shutdown(tcp::socket::shutdown_both, ignored);
      sock->close(ignored);
    });
  }

  /// At `deadline`, whatever is still open is cut off: run() returns.
  void arm_drain_timer(steady::time_point deadline) {
    drain_timer.expires_at(deadline); // cancels an earlier wait
    drain_timer.async_wait([this](beast::error_code ec) {
      if (ec || drained)
        return;
      spdlog::warn("drain timeout: cutting {} connection(s) still open",
                   shared.connections.load());
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
  net::io_context ioc;
  std::unique_ptr<rate_limiter> limiter;
  tcp::acceptor acceptor;
  net::steady_timer drain_timer;
  net::steady_timer poll_timer;
  net::steady_timer backoff_timer; ///< accepting paused while out of descriptors
  steady::time_point exhausted_since{}; ///< start of the episode; epoch when none (acceptor strand)
  std::uint64_t exhausted_failures = 0;
  std::vector<std::thread> threads;
  std::atomic<bool> drained{false};
};

server::server(const config::settings& settings, const router& routes)
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
  const auto& sh = impl_->shared;
  auto files = shared_state::current_open_files_limit();
  auto room = files > static_cast<std::uint64_t>(sh.reserved) ? files - sh.reserved : 0;
  if (sh.cfg.max_connections && static_cast<std::uint64_t>(*sh.cfg.max_connections) > room)
    spdlog::warn("http.max_connections {} does not fit the open-files limit {} ({} kept for "
                 "other descriptors): past {} connections, accepting pauses until some close",
                 *sh.cfg.max_connections, files, sh.reserved, room);
  spdlog::info("http.max_connections {}{}, {} per address; open-files limit {}",
               sh.max_connections, sh.cfg.max_connections ? "" : " (derived)",
               sh.cfg.max_connections_per_address, files);
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
  return static_cast<int>(
    std::min<std::uint64_t>(open_files - reserve, static_cast<std::uint64_t>(max_derived_connections)));
}

} // namespace emporium::http
