#pragma once
/// One HTTP/1.1 connection on Boost.Beast (`session`) and what all connections share
/// (`shared_state`). Included only by session.cpp, listener.cpp and websocket_session.cpp:
/// Beast stays in these translation units and request_conversion.cpp (the parser's limits, the
/// answer to a request that does not parse, the conversion into the handlers' request). See
/// listener.hpp for which thread runs what.

#include "config/settings.hpp"
#include "http/feed_protocol.hpp"
#include "http/gateway.hpp"
#include "http/metrics.hpp"
#include "http/rate_limiter.hpp"
#include "http/router.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/resource.h>

#include <array>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace emporium::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using steady = std::chrono::steady_clock;

/// A connection's executor, its socket and its timers, over the concrete strand type: no
/// type-erased executor copied and invoked per operation (`any_io_executor`, what tcp::socket
/// and beast::tcp_stream carry).
using strand_type = net::strand<net::io_context::executor_type>;
using socket_type = net::basic_stream_socket<tcp, strand_type>;
using timer_type = net::basic_waitable_timer<steady, net::wait_traits<steady>, strand_type>;

int reserved_descriptors(int pool_size);
int derived_max_connections(std::uint64_t open_files, int pool_size);

class session;

/// SO_SNDBUF of a feed connection (WebSocket, event stream), fixed (no autotuning): a reader
/// that stopped fills the connection's bounded queue (and is disconnected) after a few hundred
/// events instead of after a kernel buffer of megabytes. Linux doubles it for its bookkeeping:
/// 32 KiB hold some 300 events of ~100 bytes, far more than a feed sends in a round trip, and
/// 50,000 connections pin at most 1.6 GiB of kernel memory.
inline constexpr int feed_send_buffer_bytes = 16 * 1024;

/// A connection that left HTTP: the WebSocket of GET /ws (websocket_session.cpp, the one
/// translation unit that includes Beast's websocket). Its session stays alive as long as it
/// does, so the connection is still counted, drained and limited as one.
class upgraded_connection {
 public:
  virtual ~upgraded_connection() = default;
  /// Graceful shutdown (on the connection's strand): close 1001.
  virtual void drain() = 0;
};

/// Takes over the connection of `owner` after its GET /ws was admitted: the WebSocket handshake
/// on `feed`'s upgrade request, then the feed. `buffer` holds what was read past the request.
std::shared_ptr<upgraded_connection> start_websocket(beast::tcp_stream stream,
                                                     beast::flat_buffer buffer,
                                                     std::shared_ptr<session> owner,
                                                     std::shared_ptr<feeds::channel> feed);

/// What every session shares: settings, routes, the gateway, the registry used by graceful
/// shutdown. Outlives the io_context (see server::impl), so sessions destroyed with it may
/// still touch it.
struct shared_state {
  shared_state(const config::settings& s, const router& r, gateway::session_verifier v)
    : cfg(s.http),
      node(config::node_name(s)),
      routes(r),
      verify_session(std::move(v)),
      admin_key_hash(s.auth.admin_key_hash),
      token_key(gateway::token_key(s.auth.admin_key_hash)),
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
  std::string node; ///< X-Emporium-Node on every answer
  const router& routes;
  gateway::session_verifier verify_session; ///< the runtime's, for signed tokens
  std::string admin_key_hash;               ///< config: auth.admin_key_hash
  std::string token_key;                    ///< gateway::token_key(admin_key_hash)
  gateway::cors_policy cors;
  metrics::http_families& m;
  std::vector<config::cidr_block> trusted;
  int reserved;                    ///< descriptors kept for all but clients
  int max_connections;             ///< http.max_connections, or derived from the open-files limit
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

/// One connection: reads requests (do_read, on_read), passes each through the gateway
/// (admit, limit) and the router (dispatch), and writes the answers in request order (fulfil,
/// flush, on_write). Everything runs on the connection's strand.
class session : public answer_sink, public std::enable_shared_from_this<session> {
 public:
  /// `remote` is the peer's address and `peer` what the gateway makes of it
  /// (gateway::peer_of); `address_key` is what it counts against
  /// http.max_connections_per_address ("" when not counted: a trusted proxy).
  session(socket_type&& socket, shared_state& shared, std::string remote, gateway::peer_info peer,
          std::string address_key)
    : strand_(socket.get_executor()),
      socket_(std::move(socket)),
      shared_(shared),
      watchdog_(strand_),
      io_timer_(strand_),
      keep_alive_(strand_),
      remote_(std::move(remote)),
      peer_(std::move(peer)),
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

  void start();

  /// Graceful shutdown: finish what was read, read nothing new, then close.
  void drain();

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
    bool keep_alive = true; ///< the request allows the connection to stay open
    steady::time_point deadline;
    /// The answer, once ready: its status, headers and body, serialized by flush() (not by
    /// Beast's serializer: one string for the header block, written with the body).
    response res;
    bool last = false;           ///< the connection closes once this answer is written
    bool content_length = true;  ///< false for 204, 304 and an event stream (close-delimited)
    std::size_t body_length = 0; ///< Content-Length (a HEAD answer's is the GET's)
    std::string wire_head;       ///< the status line and header block, while written
    std::shared_ptr<feeds::channel> feed; ///< the answer is a WebSocket or an event stream

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
  //
  // A request is read by parsing what the buffer holds with Beast's parser and reading more
  // from the socket only when it needs more: a request that arrived whole (almost every one)
  // costs one read, no composed operation and no post.

  /// Begins the next request (when reading may go on): parses what is buffered, else waits
  /// for its first byte under the idle timeout.
  void do_read();

  /// Feeds the buffer to the parser; the request is complete (on_read), bad (on_read_error),
  /// or needs more bytes (read_more, under the header's or the body's deadline).
  void parse_request();

  /// One read from the socket into the buffer, then parse_request.
  void read_more();

  /// Writes `100 Continue`, then reads the body.
  void send_continue();

  void on_read_error(beast::error_code ec, bool started);

  /// A protocol error: the answer goes after those already queued, then the connection closes.
  void answer_and_close(response res);

  pending& enqueue(unsigned version, bool keep_alive, bool head);

  pending* find(std::uint64_t seq);

  void on_read();

  // -- the gateway --------------------------------------------------------------------------

  /// The gateway pass: request id, CORS origin, then gateway::admit (target, client address,
  /// route class, caller), then the rate limiter; the request continues in `dispatch` once the
  /// limiter has decided (at once in local mode, from the limiter thread through this strand in
  /// redis mode). Health probes skip the limiter. A token this server signed is verified here,
  /// once (at once from the runtime's session cache, else by a lookup whose answer comes back
  /// through this strand): a live session is limited as its customer, and its customer is the
  /// request's caller for the handler.
  void admit(request req, pending& slot);

  void limit(request req, bool target_ok, std::uint64_t seq, route_class cls, std::string bucket);

  /// Routes the request and calls its handler, whose answer comes back through `respond`.
  void dispatch(request req, bool target_ok, std::uint64_t seq,
                const std::optional<limit_decision>& d);

  /// answer_sink: what the request's responder hands over, recorded at once when it comes on
  /// the connection's strand (a handler that answers inside its call, such as a snapshot read),
  /// else posted to it (a runtime callback on an actor thread).
  void answer(std::uint64_t seq, response res) override;
  void answer_later(std::uint64_t seq, responder::make_fn make) override;

  /// Makes the answer of request `seq` on the strand (responder::later) and records it.
  void make_answer(std::uint64_t seq, const responder::make_fn& make);

  /// What every answer gets: the request id, the rate limit's state, CORS, the problem's
  /// instance; then it is counted and logged.
  void finish(pending& slot, response& res);

  // -- writing ------------------------------------------------------------------------------

  /// Records the answer of request `seq` (on the strand); answers leave in request order.
  void fulfil(std::uint64_t seq, response res);

  /// True when `slot` is the last answer this connection will send.
  bool close_after_last(const pending& slot) const;

  /// A request is being received: its header has arrived, or its first bytes are already in
  /// the buffer (a pipelined request not parsed yet). A drain or a close waits for it.
  bool receiving() const;

  void flush();

  /// The status line and header block of `slot`'s answer, as Beast would write them.
  static std::string serialize_head(const pending& slot);

  void on_write(beast::error_code ec);

  // -- shutdown and deadlines -----------------------------------------------------------------

  /// The deadline of the read (and of the write) being started, as beast::tcp_stream had
  /// them (a pending operation keeps the deadline it began with; past it, the socket closes
  /// and the operation fails with beast::error::timeout). One timer serves both, and it is
  /// armed again only when a deadline is earlier than the one it waits for: the later
  /// deadline every request sets costs no timer operation, the timer that fires early waits
  /// again for the deadline then current.
  void expire_read_after(std::chrono::milliseconds d);
  void expire_write_after(std::chrono::milliseconds d);
  void arm_io_timer(steady::time_point at);
  void on_io_timer();

  /// What a completed read or write reports: beast::error::timeout once the deadline closed the
  /// socket (even if it completed as that happened), operation_aborted once closed, else `ec`.
  beast::error_code io_error(beast::error_code ec) const;

  void on_drain();

  /// The backstop behind every request's deadline: if the oldest request has no answer past its
  /// deadline (the runtime times requests out earlier, so this should never fire), it gets 504.
  void arm_watchdog();

  void close();

  // -- feeds: the WebSocket upgrade and event streams -----------------------------------------

  /// True for a request that asks to become a WebSocket: nothing more is read until it is
  /// answered (the socket may change hands).
  static bool wants_upgrade(const bhttp::request<bhttp::string_body>& req);

  /// Records an answer whose `feed` is set: a WebSocket handshake to come, or an event
  /// stream's header (no Content-Length: the stream ends with the connection).
  void fulfil_feed(pending& slot, response& res);

  /// The WebSocket's turn has come (every earlier answer is written): hands the connection to
  /// start_websocket.
  void hand_over();

  /// The event stream's header is written: from now on its messages, keep-alive comments, and
  /// nothing read but the end of the connection.
  void begin_stream();

  /// Writes what the stream's queue holds (on the strand, one write at a time).
  void stream_pump();

  void arm_keep_alive();

  /// Waits for the peer to close (bytes it sends are dropped) and then closes.
  void watch_peer();

  strand_type strand_;
  socket_type socket_;
  shared_state& shared_;
  timer_type watchdog_;
  timer_type io_timer_;   ///< the deadlines of the pending read and write (expire_read_after)
  timer_type keep_alive_; ///< an event stream's keep-alive comments
  steady::time_point read_deadline_{};
  steady::time_point write_deadline_{};
  steady::time_point io_armed_ = steady::time_point::max(); ///< io_timer_'s wait; max: none
  std::uint64_t io_generation_ = 0;                         ///< of io_timer_'s current wait
  bool timed_out_ = false;
  steady::time_point watchdog_armed_ = steady::time_point::max(); ///< max: not waiting
  /// Where the request being read is: waiting for its first byte (idle timeout), its header
  /// (header timeout) or its body (body timeout).
  enum class read_phase { idle, header, body } phase_ = read_phase::idle;
  bool read_pending_ = false; ///< read_more's read is on the socket
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::deque<std::unique_ptr<pending>> queue_;
  std::uint64_t next_seq_ = 1;
  std::string remote_;
  gateway::peer_info peer_; ///< remote_ as the gateway sees it, worked out once (listener)
  std::string address_key_;
  bool reading_ = false;
  bool writing_ = false;
  bool close_after_ = false;
  bool closed_ = false;
  bool upgrading_ = false; ///< a WebSocket upgrade request is being answered
  bool streaming_ = false; ///< the connection carries an event stream
  bool watching_ = false;  ///< watch_peer's read is pending
  std::shared_ptr<feeds::channel> stream_feed_;
  std::deque<feed_message> stream_out_; ///< being written
  std::array<char, 512> discard_{};
  std::weak_ptr<upgraded_connection> upgraded_;
};

} // namespace emporium::http
