#include "http/session.hpp"

#include "core/ids.hpp"
#include "http/logging.hpp"
#include "http/problem.hpp"
#include "http/request_conversion.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace emporium::http {

void session::start() {
  {
    std::lock_guard<std::mutex> guard{shared_.mtx};
    shared_.sessions.emplace(this, weak_from_this());
  }
  buffer_.reserve(4096); // a first request with a token and the usual headers in one read
  net::dispatch(strand_, [self = shared_from_this()] { self->do_read(); });
}

void session::drain() {
  net::post(strand_, [self = shared_from_this()] { self->on_drain(); });
}

// -- reading ------------------------------------------------------------------------------

void session::do_read() {
  // While draining, the pipelined requests whose bytes have already arrived are still read and
  // answered; nothing more is waited for.
  bool buffered_in_drain = shared_.draining.load() && buffer_.size() > 0;
  if ((close_after_ && !buffered_in_drain) || closed_ || upgrading_ || streaming_)
    return;
  if (queue_.size() >= static_cast<std::size_t>(cfg().max_pipeline))
    return; // resumed by on_write once the client has read some answers
  reading_ = true;
  parser_.emplace();
  apply_limits(*parser_, cfg());
  phase_ = read_phase::idle;
  if (buffer_.size() > 0) {
    // A pipelined request, already here (in part at least): parsed on a later turn of the
    // strand, as Beast's read did. on_read calls this before it admits the request before, and
    // requests must reach the gateway and their handlers in the order they were sent.
    net::post(strand_, [self = shared_from_this()] { self->parse_request(); });
    return;
  }
  // Idle keep-alive: wait for the first byte of the next request.
  expire_read_after(std::chrono::milliseconds(cfg().idle_timeout_ms));
  read_more();
}

void session::parse_request() {
  if (closed_)
    return;
  if (streaming_) {
    // An event stream began since this read was started: nothing more is read as requests.
    reading_ = false;
    parser_.reset();
    return watch_peer();
  }
  if (timed_out_)
    return on_read_error(beast::error::timeout, true);
  beast::error_code ec;
  auto step = feed_parser(*parser_, buffer_, cfg().header_limit, ec);
  if (step == parse_step::failed)
    return on_read_error(ec, true);
  if (step == parse_step::done)
    return on_read();
  if (!parser_->is_header_done()) {
    // The whole header block must arrive within the header timeout, from its first byte: a
    // client trickling it is cut off, however often it sends a byte.
    if (phase_ == read_phase::idle) {
      phase_ = read_phase::header;
      expire_read_after(std::chrono::milliseconds(cfg().header_timeout_ms));
    }
    return read_more();
  }
  if (phase_ != read_phase::body) {
    phase_ = read_phase::body;
    auto& req = parser_->get();
    // Only when nothing else is being written: interim answers must not interleave.
    if (beast::iequals(req[bhttp::field::expect], "100-continue") && queue_.empty() && !writing_)
      return send_continue();
    // The whole body must arrive within the body timeout (an absolute deadline, like the
    // header's): a client trickling it holds the connection no longer, however often it sends.
    expire_read_after(std::chrono::milliseconds(cfg().body_timeout_ms));
  }
  read_more();
}

void session::read_more() {
  auto size = beast::read_size(buffer_, 65536);
  read_pending_ = true;
  socket_.async_read_some(
    buffer_.prepare(size), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->read_pending_ = false;
      self->buffer_.commit(n);
      bool started = self->phase_ != read_phase::idle || self->parser_->got_some();
      // Whatever this read brought: past the deadline the socket was closed.
      ec = self->io_error(ec);
      if (ec == net::error::eof && self->parser_->got_some()) {
        // The end of a request without a length (or of a cut-off one): the parser decides.
        ec = {};
        self->parser_->put_eof(ec);
        if (ec)
          return self->on_read_error(ec, true);
        return self->parse_request();
      }
      if (ec == net::error::eof)
        ec = bhttp::error::end_of_stream;
      if (ec)
        return self->on_read_error(ec, started);
      self->parse_request();
    });
}

void session::send_continue() {
  static const std::string continue_1_1 = "HTTP/1.1 100 Continue\r\n\r\n";
  static const std::string continue_1_0 = "HTTP/1.0 100 Continue\r\n\r\n";
  writing_ = true;
  expire_write_after(std::chrono::milliseconds(cfg().idle_timeout_ms));
  const auto& text = parser_->get().version() >= 11 ? continue_1_1 : continue_1_0;
  net::async_write(
    socket_, net::buffer(text), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->writing_ = false;
      if (self->io_error(ec))
        return self->close();
      self->expire_read_after(std::chrono::milliseconds(self->cfg().body_timeout_ms));
      self->read_more();
    });
}

void session::on_read_error(beast::error_code ec, bool started) {
  reading_ = false;
  if (streaming_)
    return watch_peer(); // the read begun before the stream, cancelled when it started
  if (auto res = read_error_answer(ec, started, cfg()))
    return answer_and_close(std::move(*res));
  // The client left, or idled or trickled past its timeout: nothing to answer.
  close_after_ = true;
  if (queue_.empty() && !writing_)
    close();
}

void session::answer_and_close(response res) {
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

session::pending& session::enqueue(unsigned version, bool keep_alive, bool head) {
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

session::pending* session::find(std::uint64_t seq) {
  for (auto& p : queue_)
    if (p->seq == seq)
      return p.get();
  return nullptr;
}

void session::on_read() {
  reading_ = false;
  if (streaming_) {
    parser_.reset(); // read before the stream began: an event stream answers nothing more
    return watch_peer();
  }
  auto beast_req = parser_->release();
  parser_.reset();
  if (wants_upgrade(beast_req))
    upgrading_ = true;
  // Draining: the connection closes after the last request already received.
  bool keep_alive = beast_req.keep_alive() && !(shared_.draining.load() && buffer_.size() == 0);
  bool head = beast_req.method() == bhttp::verb::head;
  auto& slot = enqueue(beast_req.version(), keep_alive, head);
  if (!keep_alive)
    close_after_ = true;
  // The next read begins before this request is admitted: its answer may be made right away, on
  // this strand (a snapshot read, a refusal), and must find a pipelined request that is already
  // here being received (it is not the last answer then, also in a drain). After an upgrade
  // request nothing is read: its socket may change hands.
  do_read();
  admit(to_request(std::move(beast_req), remote_), slot);
}

void session::admit(request req, pending& slot) {
  slot.method = method_label(req.method);
  auto id = req.header("x-request-id");
  if (gateway::valid_request_id(id))
    slot.request_id = std::string{id};
  if (shared_.cors.enabled())
    slot.origin = std::string{req.header("origin")};
  auto in = gateway::admit(req, peer_, shared_.trusted, shared_.token_key, shared_.admin_key_hash);
  slot.client = std::move(in.identity.shown);
  auto seq = slot.seq;
  if (in.probe) {
    slot.route_class = "probe";
    return dispatch(std::move(req), in.target_ok, seq, std::nullopt);
  }
  slot.route_class = to_string(in.cls);
  auto& who = in.identity;
  if (who.session_token.empty() || !shared_.verify_session)
    return limit(std::move(req), in.target_ok, seq, in.cls, std::move(who.bucket));
  auto token = std::move(who.session_token);
  auto hash = core::sha256_hex(token);
  if (shared_.known_dead(hash))
    return limit(std::move(req), in.target_ok, seq, in.cls, std::move(who.bucket));
  // The one verification of the request: its answer (at once from the runtime's session cache,
  // else after a lookup on a blocking worker) comes back through this strand.
  shared_.verify_session(
    std::move(token), [self = shared_from_this(), req = std::move(req), target_ok = in.target_ok,
                       seq, cls = in.cls, bucket = std::move(who.bucket), hash = std::move(hash)](
                        std::string customer, bool dead, std::int64_t expires_at_ms) mutable {
      if (dead)
        self->shared_.mark_dead(hash);
      net::dispatch(self->strand_,
                    [self, req = std::move(req), target_ok, seq, cls, bucket = std::move(bucket),
                     customer = std::move(customer), expires_at_ms]() mutable {
                      if (!customer.empty()) {
                        auto c = gateway::customer_identity(customer);
                        bucket = std::move(c.bucket);
                        req.who = std::move(c.who);
                        req.who.session_expires_at_ms = expires_at_ms;
                        if (auto* slot = self->find(seq))
                          slot->client = std::move(c.shown);
                      }
                      self->limit(std::move(req), target_ok, seq, cls, std::move(bucket));
                    });
    });
}

void session::limit(request req, bool target_ok, std::uint64_t seq, route_class cls,
                    std::string bucket) {
  auto key = limit_key(cls, bucket);
  if (auto d = shared_.limiter->try_now(cls, key))
    return dispatch(std::move(req), target_ok, seq, *d);
  shared_.limiter->submit(
    cls, std::move(key),
    [self = shared_from_this(), req = std::move(req), target_ok, seq](limit_decision d) mutable {
      net::post(self->strand_, [self, req = std::move(req), target_ok, seq, d]() mutable {
        self->dispatch(std::move(req), target_ok, seq, d);
      });
    });
}

void session::dispatch(request req, bool target_ok, std::uint64_t seq,
                       const std::optional<limit_decision>& d) {
  auto* slot = find(seq);
  if (!slot || slot->ready || closed_)
    return; // answered meanwhile (the watchdog), or the client is gone
  slot->limit = d;
  if (d && !d->allowed) {
    shared_.m.rate_limited.with({slot->route_class}).inc();
    auto res = problem(429, refusal_detail(*d));
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
  // An answer given on this strand (a handler that answers at once, such as a snapshot read)
  // is recorded here and now; one from another thread (a runtime callback) is posted to it.
  responder respond{shared_from_this(), seq};
  logging::request_scope scope{slot->request_id};
  try {
    m.matched->handle(req, m.params, std::move(respond));
  } catch (const std::exception& e) {
    spdlog::error("handler for {} {} threw: {}", req.method, m.matched->pattern, e.what());
    fulfil(seq, problem(500, "internal error"));
  }
}

void session::answer(std::uint64_t seq, response res) {
  if (strand_.running_in_this_thread())
    return fulfil(seq, std::move(res));
  net::post(strand_, [self = shared_from_this(), seq, res = std::move(res)]() mutable {
    self->fulfil(seq, std::move(res));
  });
}

void session::answer_later(std::uint64_t seq, responder::make_fn make) {
  if (strand_.running_in_this_thread())
    return make_answer(seq, make);
  net::post(strand_, [self = shared_from_this(), seq, make = std::move(make)] {
    self->make_answer(seq, make);
  });
}

void session::make_answer(std::uint64_t seq, const responder::make_fn& make) {
  auto* slot = find(seq);
  if (!slot || slot->ready)
    return; // the watchdog answered it, or the connection closed: nothing to encode
  logging::request_scope scope{slot->request_id};
  try {
    fulfil(seq, make());
  } catch (const std::exception& e) {
    spdlog::error("encoding the answer to {} {} threw: {}", slot->method, slot->route, e.what());
    fulfil(seq, problem(500, "internal error"));
  }
}

void session::finish(pending& slot, response& res) {
  res.headers.reserve(res.headers.size() + 6);
  res.header("X-Request-Id", slot.request_id);
  res.header("X-Emporium-Node", shared_.node);
  if (slot.limit) {
    res.header("RateLimit-Limit", std::to_string(slot.limit->limit));
    res.header("RateLimit-Remaining", std::to_string(slot.limit->remaining));
    res.header("RateLimit-Reset", std::to_string(slot.limit->reset_s));
  }
  shared_.cors.decorate(res, slot.origin);
  gateway::add_problem_instance(res, slot.request_id);

  auto elapsed = std::chrono::duration<double>(steady::now() - slot.started).count();
  auto counted = shared_.m.request_metrics(slot.method, slot.route,
                                           metrics::status_class(res.status));
  counted.requests->inc();
  counted.duration->observe(elapsed);
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

void session::fulfil(std::uint64_t seq, response res) {
  // The request may be gone already: the watchdog answered it, or the connection closed.
  auto* slot = find(seq);
  if (!slot || slot->ready)
    return;
  finish(*slot, res);
  if (res.feed && slot->head)
    res.feed.reset(); // HEAD of an event stream: its header only (and unsubscribed at once)
  if (res.feed)
    return fulfil_feed(*slot, res);
  if (upgrading_ && queue_.back().get() == slot)
    upgrading_ = false; // the upgrade was refused: an ordinary answer, and reading goes on
  slot->last = !slot->keep_alive || close_after_last(*slot);
  if (res.status == 304 || res.status == 204 || res.status < 200) {
    slot->content_length = false;
    res.body.clear();
  } else {
    slot->body_length = res.body.size();
    if (slot->head)
      res.body.clear(); // Content-Length stays that of the GET
  }
  slot->res = std::move(res);
  slot->ready = true;
  flush();
}

std::string session::serialize_head(const pending& slot) {
  const auto& res = slot.res;
  auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(res.status));
  std::size_t size = 96 + res.content_type.size() + reason.size();
  for (const auto& [k, v] : res.headers)
    size += k.size() + v.size() + 4;
  std::string h;
  h.reserve(size);
  h += "HTTP/";
  h += static_cast<char>('0' + slot.version / 10 % 10);
  h += '.';
  h += static_cast<char>('0' + slot.version % 10);
  h += ' ';
  h += std::to_string(res.status);
  h += ' ';
  h.append(reason.data(), reason.size());
  h += "\r\nServer: emporium\r\n";
  if (!res.content_type.empty()) {
    h += "Content-Type: ";
    h += res.content_type;
    h += "\r\n";
  }
  for (const auto& [k, v] : res.headers) {
    h += k;
    h += ": ";
    h += v;
    h += "\r\n";
  }
  // What Beast's keep_alive() writes: HTTP/1.1 says when it closes, HTTP/1.0 when it stays.
  if (slot.version >= 11 && slot.last)
    h += "Connection: close\r\n";
  else if (slot.version < 11 && !slot.last)
    h += "Connection: keep-alive\r\n";
  if (slot.content_length) {
    h += "Content-Length: ";
    h += std::to_string(slot.body_length);
    h += "\r\n";
  }
  h += "\r\n";
  return h;
}

bool session::close_after_last(const pending& slot) const {
  // Not while a request is being received behind it: that one is the last.
  return close_after_ && queue_.back().get() == &slot && !receiving();
}

void session::flush() {
  if (writing_ || closed_ || queue_.empty() || !queue_.front()->ready)
    return;
  if (queue_.front()->feed && queue_.front()->feed->kind == feeds::transport::ws)
    return hand_over();
  writing_ = true;
  expire_write_after(std::chrono::milliseconds(cfg().idle_timeout_ms));
  auto& slot = *queue_.front();
  slot.wire_head = serialize_head(slot);
  // The body is empty whenever none is sent (HEAD, 1xx, 204, 304, an event stream's header).
  std::array<net::const_buffer, 2> out{net::buffer(slot.wire_head), net::buffer(slot.res.body)};
  net::async_write(socket_, out, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    self->on_write(ec);
  });
}

void session::on_write(beast::error_code ec) {
  writing_ = false;
  if (io_error(ec))
    return close();
  if (queue_.front()->feed)
    return begin_stream();
  bool last = queue_.front()->last;
  queue_.pop_front();
  arm_watchdog();
  if (last)
    return close();
  if (!queue_.empty())
    return flush();
  // Nothing left to send. When closing was decided (drain, Connection: close, a protocol
  // error), close now, unless a request is being received (its bytes are here): a read that
  // waits for a next request will never be served.
  if (close_after_ && !receiving())
    return close();
  if (!reading_)
    do_read();
}

bool session::receiving() const {
  return reading_ && parser_ && (parser_->is_header_done() || buffer_.size() > 0);
}

void session::on_drain() {
  if (auto ws = upgraded_.lock())
    return ws->drain();
  if (streaming_)
    return close();
  close_after_ = true;
  if (closed_)
    return;
  // A request whose first bytes have arrived is accepted: it is read to its end and answered
  // (pipelined requests already in the buffer are parsed one by one, each after the one before).
  if (queue_.empty() && !writing_ && !receiving())
    return close();
  // The last answer already waiting says `Connection: close` (unless it is on the wire).
  if (queue_.empty() || receiving())
    return;
  auto& back = *queue_.back();
  bool on_the_wire = writing_ && queue_.size() == 1;
  if (back.ready && !on_the_wire)
    back.last = true;
}

void session::arm_watchdog() {
  if (closed_)
    return;
  // The earliest deadline of a request without an answer (deadlines grow with the queue). A
  // wait that ends no later is pending already: it looks again when it ends.
  auto it = std::find_if(queue_.begin(), queue_.end(), [](const auto& p) { return !p->ready; });
  if (it == queue_.end() || watchdog_armed_ <= (*it)->deadline)
    return;
  watchdog_armed_ = (*it)->deadline;
  watchdog_.expires_at(watchdog_armed_);
  watchdog_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec)
      return; // cancelled: closed
    self->watchdog_armed_ = steady::time_point::max();
    if (self->closed_)
      return;
    auto now = steady::now();
    std::vector<std::uint64_t> late;
    for (const auto& p : self->queue_)
      if (!p->ready && now >= p->deadline)
        late.push_back(p->seq);
    for (auto seq : late)
      self->fulfil(seq, problem(504, "the request did not complete in time"));
    self->arm_watchdog();
  });
}

void session::expire_read_after(std::chrono::milliseconds d) {
  read_deadline_ = steady::now() + d;
  arm_io_timer(read_deadline_);
}

void session::expire_write_after(std::chrono::milliseconds d) {
  write_deadline_ = steady::now() + d;
  arm_io_timer(write_deadline_);
}

void session::arm_io_timer(steady::time_point at) {
  if (closed_ || io_armed_ <= at)
    return;
  io_armed_ = at;
  io_timer_.expires_at(at); // cancels the later wait, whose handler sees another generation
  io_timer_.async_wait([self = shared_from_this(), gen = ++io_generation_](beast::error_code ec) {
    if (ec || gen != self->io_generation_)
      return;
    self->io_armed_ = steady::time_point::max();
    self->on_io_timer();
  });
}

void session::on_io_timer() {
  if (closed_)
    return;
  auto now = steady::now();
  if ((read_pending_ && now >= read_deadline_) || (writing_ && now >= write_deadline_)) {
    // What beast::tcp_stream did: the socket closes, the pending operations fail (timeout).
    timed_out_ = true;
    beast::error_code ec;
    socket_.close(ec);
    return;
  }
  auto next = steady::time_point::max();
  if (read_pending_)
    next = read_deadline_;
  if (writing_)
    next = std::min(next, write_deadline_);
  if (next != steady::time_point::max())
    arm_io_timer(next);
}

beast::error_code session::io_error(beast::error_code ec) const {
  if (timed_out_)
    return beast::error::timeout; // also for an operation that completed as the deadline passed
  if (closed_)
    return net::error::operation_aborted; // whatever it brought: nothing more is read or sent
  return ec;
}

void session::close() {
  if (closed_)
    return;
  closed_ = true;
  watchdog_.cancel();
  io_timer_.cancel();
  keep_alive_.cancel();
  stream_feed_.reset(); // unsubscribes an event stream
  beast::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  socket_.close(ec);
}

// -- feeds: the WebSocket upgrade and event streams -------------------------------------------

bool session::wants_upgrade(const bhttp::request<bhttp::string_body>& req) {
  return req.method() == bhttp::verb::get
         && beast::iequals(req[bhttp::field::upgrade], "websocket");
}

void session::fulfil_feed(pending& slot, response& res) {
  slot.feed = std::move(res.feed);
  slot.ready = true;
  upgrading_ = false;
  if (slot.feed->kind == feeds::transport::sse) {
    // The header now; the stream follows it until the connection ends, so nothing after this
    // request is read or answered.
    close_after_ = true;
    streaming_ = true;
    slot.last = true; // close-delimited: no Content-Length, no chunks
    slot.content_length = false;
    res.body.clear();
    slot.res = std::move(res);
  }
  flush();
}

void session::hand_over() {
  auto slot = std::move(queue_.front());
  queue_.clear();
  closed_ = true; // this session no longer touches the socket
  watchdog_.cancel();
  io_timer_.cancel();
  keep_alive_.cancel();
  slot->feed->limiter = shared_.limiter;
  auto ws = start_websocket(beast::tcp_stream{std::move(socket_)}, std::move(buffer_),
                            shared_from_this(), std::move(slot->feed));
  upgraded_ = ws;
  if (shared_.draining.load())
    ws->drain(); // the shutdown began while the upgrade was being admitted
}

void session::begin_stream() {
  stream_feed_ = std::move(queue_.front()->feed);
  queue_.clear();
  watchdog_.cancel();
  if (shared_.draining.load())
    return close(); // the shutdown began while the stream was being subscribed
  beast::error_code ec;
  // A reader that stopped fills the stream's queue (then its stream ends), not kernel buffers
  // of megabytes.
  socket_.set_option(net::socket_base::send_buffer_size(feed_send_buffer_bytes), ec);
  std::weak_ptr<session> weak = shared_from_this();
  auto ex = strand_;
  stream_feed_->queue->on_ready([weak, ex] {
    if (auto self = weak.lock())
      net::post(ex, [self] { self->stream_pump(); });
  });
  if (reading_)
    socket_.cancel(ec); // a read under the idle timeout, which would cut the stream;
                        // its handler watches the peer instead (nothing is written now)
  else
    watch_peer();
  arm_keep_alive();
  stream_pump();
}

void session::stream_pump() {
  if (closed_ || !stream_feed_)
    return;
  auto& q = *stream_feed_->queue;
  if (q.overflowed())
    return close(); // a reader too slow for its events: the stream ends, a stalled write too
  if (writing_)
    return;
  q.take(stream_out_);
  if (stream_out_.empty())
    return;
  std::vector<net::const_buffer> bufs;
  bool last = false;
  std::size_t n = 0;
  for (const auto& m : stream_out_) {
    if (m.k == feed_message::kind::event) {
      bufs.emplace_back(net::buffer(m.event->sse_text));
    } else if (m.k == feed_message::kind::text) {
      bufs.emplace_back(net::buffer(m.text));
    } else {
      last = true; // the subscription ended on the server's side: so does the stream
      break;
    }
    ++n;
  }
  stream_out_.resize(n);
  if (bufs.empty())
    return close();
  writing_ = true;
  expire_write_after(std::chrono::seconds(2 * stream_feed_->cfg.ping_s));
  net::async_write(socket_, bufs,
                   [self = shared_from_this(), last](beast::error_code ec, std::size_t) {
                     self->writing_ = false;
                     self->stream_out_.clear();
                     if (self->io_error(ec) || last)
                       return self->close();
                     self->stream_pump();
                   });
}

void session::arm_keep_alive() {
  if (closed_ || !stream_feed_)
    return;
  // A stream opened with a customer's token ends when that session expires.
  std::chrono::milliseconds wait = std::chrono::seconds(stream_feed_->cfg.ping_s);
  auto left = feeds::time_left(*stream_feed_);
  const bool expires = left && *left <= wait;
  keep_alive_.expires_after(expires ? *left : wait);
  keep_alive_.async_wait([self = shared_from_this(), expires](beast::error_code ec) {
    if (ec || self->closed_)
      return;
    if (expires)
      return self->close();
    self->arm_keep_alive();
    if (self->writing_)
      return; // a write still pending: its own deadline ends a stalled connection
    self->writing_ = true;
    self->expire_write_after(std::chrono::seconds(2 * self->stream_feed_->cfg.ping_s));
    net::async_write(self->socket_, net::buffer(feeds::sse_keep_alive()),
                     [self](beast::error_code wec, std::size_t) {
                       self->writing_ = false;
                       if (self->io_error(wec))
                         return self->close();
                       self->stream_pump();
                     });
  });
}

void session::watch_peer() {
  if (closed_ || watching_)
    return;
  watching_ = true;
  // On the socket itself, not the timed stream: a quiet client is no reason to end a stream.
  socket_.async_read_some(net::buffer(discard_),
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                            self->watching_ = false;
                            if (ec)
                              return self->close();
                            self->watch_peer();
                          });
}

} // namespace emporium::http
