/// The WebSocket of GET /ws: the one translation unit that includes Beast's websocket. The HTTP
/// session hands over its connection once the gateway admitted the upgrade request (request
/// id, caller, rate limit, per-address feed connections) and the handler made the channel.
///
/// On the connection's strand: the handshake, one read at a time (client commands, at most
/// max_message_bytes: beyond, close 1009), one write at a time from the channel's queue (the
/// hub pushes events into it from an actor thread and the queue posts a pump here), Beast's
/// keep-alive pings every feeds.ping_s (a peer silent for twice that is dropped). A full queue
/// closes with 1013, the server's shutdown with 1001. Closing unsubscribes everything.
#include "http/session.hpp"

#include "core/ids.hpp"
#include "http/problem.hpp"
#include "http/rate_limiter.hpp"

#include <spdlog/spdlog.h>
#include <boost/beast/websocket.hpp>

#include <iterator>
#include <map>

namespace emporium::http {

namespace {

namespace websocket = boost::beast::websocket;

/// Client messages are small JSON commands.
constexpr std::size_t max_message_bytes = 4096;
/// How long the opening handshake may take.
constexpr auto handshake_timeout = std::chrono::seconds(5);

class ws_session : public upgraded_connection, public std::enable_shared_from_this<ws_session> {
 public:
  ws_session(beast::tcp_stream&& stream, std::shared_ptr<session> owner,
             std::shared_ptr<feeds::channel> feed)
    : ws_(std::move(stream)),
      close_timer_(ws_.get_executor()),
      expiry_timer_(ws_.get_executor()),
      owner_(std::move(owner)),
      feed_(std::move(feed)) {}

  ~ws_session() override { release(); }

  void start(beast::flat_buffer leftover) {
    if (leftover.size() > 0)
      spdlog::debug("websocket: {} bytes sent before the handshake were dropped", leftover.size());
    beast::error_code ec;
    auto& sock = beast::get_lowest_layer(ws_).socket();
    sock.set_option(net::socket_base::send_buffer_size(feed_send_buffer_bytes), ec);
    beast::get_lowest_layer(ws_).expires_never(); // the websocket's own timeouts from now on
    websocket::stream_base::timeout t{};
    t.handshake_timeout = handshake_timeout;
    t.idle_timeout = std::chrono::seconds(2 * feed_->cfg.ping_s);
    t.keep_alive_pings = true; // a ping after half the idle timeout without traffic
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(bhttp::field::server, "emporium"); }));
    ws_.read_message_max(max_message_bytes);

    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, feed_->target, 11};
    for (const auto& [name, value] : feed_->headers)
      req.insert(name, value);
    ws_.async_accept(req, [self = shared_from_this()](beast::error_code aec) {
      if (aec)
        return self->release();
      self->on_open();
    });
  }

  void drain() override {
    if (!open_) {
      drain_pending_ = true; // closed once the handshake is done
      return;
    }
    close_with(websocket::close_code::going_away);
  }

 private:
  void on_open() {
    open_ = true;
    if (drain_pending_) {
      read();
      return close_with(websocket::close_code::going_away);
    }
    std::weak_ptr<ws_session> weak = shared_from_this();
    auto ex = ws_.get_executor();
    feed_->queue->on_ready([weak, ex] {
      if (auto self = weak.lock())
        net::post(ex, [self] { self->pump(); });
    });
    arm_expiry();
    read();
    pump();
  }

  // -- reading --------------------------------------------------------------------------------

  void read() {
    ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec)
        return self->on_read_error(ec);
      self->on_message();
    });
  }

  void on_read_error(beast::error_code ec) {
    // A close from the client (answered by Beast), a message over the limit (closed 1009 by
    // Beast), the idle timeout, a reset: the connection is over, or is closing.
    if (ec != websocket::error::closed && ec != net::error::operation_aborted)
      spdlog::debug("websocket read ended: {}", ec.message());
    if (ec == websocket::error::message_too_big) {
      // Beast closes with 1009 after this read; wait for that before letting go.
      closing_ = true;
      feed_->queue->close();
      arm_close_timer();
      return;
    }
    release();
  }

  void on_message() {
    if (!ws_.got_text()) {
      in_.consume(in_.size());
      send(feeds::ws_error(std::nullopt, 400, "messages are JSON text frames"));
      return read();
    }
    auto text = beast::buffers_to_string(in_.data());
    in_.consume(in_.size());
    auto c = feeds::parse_command(text);
    if (c.k == feeds::command::kind::subscribe && feed_->limiter)
      return limit(std::move(c)); // reads on once the limiter decided
    handle(std::move(c));
    if (!closing_)
      read();
  }

  /// A subscription starts a read of its topic on the database pool: it takes a token of the
  /// client's read bucket first, as a request does, and nothing more is read meanwhile (the
  /// commands stay in order).
  void limit(feeds::command c) {
    if (auto d = feed_->limiter->try_now(route_class::read, feed_->limit_key))
      return decided(std::move(c), *d);
    // The decision holds the session: no read is pending meanwhile, and nothing else would.
    feed_->limiter->submit(route_class::read, feed_->limit_key,
                           [self = shared_from_this(), c = std::move(c)](limit_decision d) {
                             // On the limiter thread: back to this connection's executor.
                             net::post(self->ws_.get_executor(),
                                       [self, c, d]() mutable { self->decided(std::move(c), d); });
                           });
  }

  void decided(feeds::command c, const limit_decision& d) {
    if (released_ || closing_)
      return; // closing meanwhile: nothing more is subscribed, nor read
    if (d.allowed)
      handle(std::move(c));
    else
      send(feeds::ws_error(c.topic.name(), 429, refusal_detail(d)));
    if (!closing_)
      read();
  }

  void handle(feeds::command c) {
    using kind = feeds::command::kind;
    if (c.k == kind::invalid)
      return send(feeds::ws_error(c.error_topic, c.status, c.detail));
    auto name = c.topic.name();
    if (c.k == kind::unsubscribe) {
      auto it = subs_.find(name);
      if (it == subs_.end())
        return send(feeds::ws_unsubscribed(name)); // idempotent
      auto sink = std::move(it->second);
      subs_.erase(it);
      feed_->rt.unsubscribe(c.topic, sink);
      // After every event already queued for it.
      sink->retire(feed_message::of_text(feeds::ws_unsubscribed(name)));
      return;
    }
    if (subs_.count(name) > 0)
      return send(feeds::ws_error(name, 400, "already subscribed to " + name));
    if (subs_.size() >= static_cast<std::size_t>(feed_->cfg.max_subscriptions_per_connection))
      return send(feeds::ws_error(name, 429,
                                  "at most "
                                    + std::to_string(feed_->cfg.max_subscriptions_per_connection)
                                    + " subscriptions per connection"));
    if (!core::is_valid_id(c.topic.id, feeds::id_prefix(c.topic)))
      return send(feeds::ws_error(name, 404, feeds::not_found_detail(c.topic)));
    auto sink = std::make_shared<queue_sink>(feed_->queue, name);
    subs_.emplace(name, sink);
    feed_->rt.subscribe(feed_->who, c.topic, c.after, sink, [sink, name](result<std::int64_t> r) {
      // On an actor thread, before any event of the subscription.
      if (r)
        sink->acknowledge(feeds::ws_subscribed(name, *r));
      else
        sink->refuse(status_of(r.error().code), r.error().detail);
    });
  }

  /// A message made here, in order with everything queued.
  void send(std::string text) { feed_->queue->push(feed_message::of_text(std::move(text))); }

  // -- writing --------------------------------------------------------------------------------

  void pump() {
    if (released_ || closing_)
      return;
    if (feed_->queue->overflowed())
      return close_with(websocket::close_code::try_again_later); // 1013: a reader too slow
    if (writing_ || !out_.empty())
      return; // what arrives meanwhile waits in the bounded queue, which is what bounds it
    feed_->queue->take(out_);
    write_next();
  }

  void write_next() {
    while (!writing_ && !out_.empty() && !released_) {
      auto& m = out_.front();
      const std::string* text = nullptr;
      switch (m.k) {
        case feed_message::kind::event: text = &m.event->ws_text; break;
        case feed_message::kind::text: text = &m.text; break;
        case feed_message::kind::failed:
        case feed_message::kind::ended:
          // The subscription is over on the server's side: forget it, tell the client.
          subs_.erase(m.topic);
          m.text = feeds::ws_error(m.topic, m.status, m.text);
          m.k = feed_message::kind::text;
          text = &m.text;
          break;
      }
      writing_ = true;
      ws_.text(true);
      ws_.async_write(net::buffer(*text),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        self->writing_ = false;
                        if (ec)
                          return self->release();
                        self->out_.pop_front();
                        if (self->close_code_)
                          return self->close_now();
                        if (self->out_.empty())
                          return self->pump();
                        self->write_next();
                      });
    }
  }

  // -- closing --------------------------------------------------------------------------------

  void close_with(websocket::close_code code) {
    if (closing_ || released_)
      return;
    closing_ = true;
    close_code_ = code;
    unsubscribe_all();
    feed_->queue->close();
    // Nothing more is sent but the close; a message on the wire stays until its write ends.
    out_.erase(writing_ && !out_.empty() ? std::next(out_.begin()) : out_.begin(), out_.end());
    arm_close_timer();
    if (!writing_)
      close_now();
  }

  void close_now() {
    auto code = *close_code_;
    ws_.async_close(code, [self = shared_from_this()](beast::error_code) {
      // Beast's pending read sees the client's close answer and ends; let go then, or now.
      self->release();
    });
  }

  /// A close that the peer does not complete (it stopped reading) is cut after twice the ping
  /// interval, as a silent peer is.
  /// A connection opened with a customer's token closes (1008) when that session expires: it
  /// could otherwise go on receiving that customer's order events for as long as it stays open.
  void arm_expiry() {
    auto left = feeds::time_left(*feed_);
    if (!left)
      return;
    expiry_timer_.expires_after(*left);
    std::weak_ptr<ws_session> weak = shared_from_this();
    expiry_timer_.async_wait([weak](beast::error_code ec) {
      if (auto self = weak.lock(); self && !ec)
        self->close_with(websocket::close_code::policy_error);
    });
  }

  void arm_close_timer() {
    close_timer_.expires_after(std::chrono::seconds(2 * feed_->cfg.ping_s));
    close_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec)
        self->release();
    });
  }

  void unsubscribe_all() {
    for (auto& [name, sink] : subs_) {
      sink->retire();
      if (auto t = model::parse_topic(name))
        feed_->rt.unsubscribe(*t, sink);
    }
    subs_.clear();
  }

  /// The end: unsubscribes everything, closes the socket, lets the HTTP session go (which
  /// gives the connection back to the listener's counts).
  void release() {
    if (released_)
      return;
    released_ = true;
    unsubscribe_all();
    feed_->queue->close();
    close_timer_.cancel();
    expiry_timer_.cancel();
    beast::error_code ec;
    auto& sock = beast::get_lowest_layer(ws_).socket();
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
    owner_.reset();
  }

  websocket::stream<beast::tcp_stream> ws_;
  net::steady_timer close_timer_;
  net::steady_timer expiry_timer_; ///< the caller's session expiry (arm_expiry)
  beast::flat_buffer in_;
  std::shared_ptr<session> owner_;
  std::shared_ptr<feeds::channel> feed_;
  std::map<std::string, std::shared_ptr<queue_sink>> subs_; ///< by topic name
  std::deque<feed_message> out_;                            ///< front: being written
  std::optional<websocket::close_code> close_code_;
  bool open_ = false; ///< the handshake is done
  bool drain_pending_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool released_ = false;
};

} // namespace

std::shared_ptr<upgraded_connection> start_websocket(beast::tcp_stream stream,
                                                     beast::flat_buffer buffer,
                                                     std::shared_ptr<session> owner,
                                                     std::shared_ptr<feeds::channel> feed) {
  auto ws = std::make_shared<ws_session>(std::move(stream), std::move(owner), std::move(feed));
  ws->start(std::move(buffer));
  return ws;
}

} // namespace emporium::http
