#include "bench/load.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <stdexcept>
#include <thread>

namespace emporium::bench {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using clock_type = std::chrono::steady_clock;

target parse_target(const std::string& url) {
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0)
    throw std::invalid_argument("--target must be an http:// URL, got '" + url + "'");
  auto rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  if (authority.empty())
    throw std::invalid_argument("--target has no host: '" + url + "'");
  target t;
  auto colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    t.host = authority.substr(0, colon);
    t.port = authority.substr(colon + 1);
  } else {
    t.host = authority;
    t.port = "80";
  }
  if (t.port.empty() || t.port.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument("--target has a bad port: '" + url + "'");
  t.host_header = authority;
  return t;
}

std::uint64_t run_stats::errors() const {
  std::uint64_t n = 0;
  for (auto& [status, count] : by_status)
    n += count;
  for (auto c : by_kind)
    n += c;
  return n;
}

namespace {

void merge_into(op_stats& a, const op_stats& b) {
  a.latency.merge(b.latency);
  a.requests += b.requests;
  a.ok += b.ok;
  for (auto& [s, c] : b.by_status)
    a.by_status[s] += c;
  for (std::size_t i = 0; i < a.by_kind.size(); ++i)
    a.by_kind[i] += b.by_kind[i];
  for (auto& [s, body] : b.samples)
    a.samples.emplace(s, body);
}

} // namespace

void run_stats::merge(const run_stats& o) {
  if (ops.size() < o.ops.size())
    ops.resize(o.ops.size());
  if (op_names.empty())
    op_names = o.op_names;
  for (std::size_t i = 0; i < o.ops.size(); ++i)
    merge_into(ops[i], o.ops[i]);
  latency.merge(o.latency);
  requests += o.requests;
  ok += o.ok;
  for (auto& [s, c] : o.by_status)
    by_status[s] += c;
  for (std::size_t i = 0; i < by_kind.size(); ++i)
    by_kind[i] += o.by_kind[i];
  elapsed_s = std::max(elapsed_s, o.elapsed_s);
  setup_s = std::max(setup_s, o.setup_s);
  setup_requests += o.setup_requests;
  setup_failures += o.setup_failures;
  unfinished += o.unfinished;
  backlog_peak += o.backlog_peak;
  bytes_read += o.bytes_read;
  for (auto& [key, cell] : o.timeline) {
    auto& mine = timeline[key];
    mine.latency.merge(cell.latency);
    mine.errors += cell.errors;
  }
  if (window_start_unix_s == 0)
    window_start_unix_s = o.window_start_unix_s;
}

namespace {

error_kind classify(const beast::error_code& ec, bool connecting) {
  if (ec == beast::error::timeout)
    return error_kind::timeout;
  if (connecting)
    return error_kind::connect;
  if (ec == net::error::connection_reset || ec == net::error::broken_pipe || ec == net::error::eof
      || ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message
      || ec == net::error::connection_aborted)
    return error_kind::reset;
  return error_kind::other;
}

class worker;

/// One keep-alive connection and the virtual user it drives. Lives on one io_context thread.
class connection {
 public:
  connection(worker& w, std::unique_ptr<user> u);

  /// Sends the user's next request; `due` is when it was meant to leave (open loop) or now.
  void start(clock_type::time_point due);
  void start_setup();
  void close();
  bool busy() const { return busy_; }

 private:
  void connect_then_send();
  void send();
  void on_write(beast::error_code ec);
  void on_read(beast::error_code ec, std::size_t bytes);
  void fail(error_kind kind, bool after_connect_attempt);
  void finish();

  worker& w_;
  std::unique_ptr<user> user_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  net::steady_timer retry_;
  request req_;
  std::string wire_;
  clock_type::time_point due_{};
  bool connected_ = false;
  bool busy_ = false;
  bool in_setup_ = false;
  bool finished_ = false; ///< the user has nothing more to send
};

/// One thread's share of the connections, its statistics and (open loop) its schedule.
class worker {
 public:
  worker(const engine_options& o, scenario& sc, std::vector<std::size_t> user_indices, double rate)
    : opts(o),
      sc_(sc),
      indices_(std::move(user_indices)),
      rate_(rate),
      tick_(ioc),
      stop_timer_(ioc) {
    stats.op_names = sc.operations();
    stats.ops.resize(stats.op_names.size());
    net::ip::tcp::resolver resolver{ioc};
    endpoints = resolver.resolve(opts.where.host, opts.where.port);
    for (auto i : indices_)
      conns_.push_back(std::make_unique<connection>(*this, sc_.make_user(i, opts.seed * 7919 + i)));
  }

  void run_setup() {
    if (conns_.empty())
      return;
    auto t0 = clock_type::now();
    for (auto& c : conns_)
      c->start_setup();
    ioc.run();
    ioc.restart();
    for (auto& c : conns_)
      c->close(); // idle for a while now: the server may drop them; reconnect when measuring
    stats.setup_s = std::chrono::duration<double>(clock_type::now() - t0).count();
  }

  void run_measured() {
    if (conns_.empty())
      return;
    start_ = clock_type::now();
    measure_from_ = start_ + to_duration(opts.warmup_s);
    stats.window_start_unix_s =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()
      + opts.warmup_s;
    end_ = measure_from_ + to_duration(opts.duration_s);
    stop_timer_.expires_at(end_);
    stop_timer_.async_wait([this](beast::error_code ec) {
      if (!ec)
        stop();
    });
    if (rate_ > 0) {
      interval_ns_ = 1e9 / rate_;
      for (auto& c : conns_)
        idle_.push_back(c.get());
      tick();
    } else {
      for (auto& c : conns_)
        c->start(clock_type::now());
    }
    ioc.run();
    if (stats.elapsed_s == 0)
      stats.elapsed_s = opts.duration_s;
  }

  /// A user is finished; when all are, the run ends now.
  void on_finished() {
    if (++finished_ < conns_.size() || stopping)
      return;
    auto now = clock_type::now();
    stats.elapsed_s = std::max(1e-3, std::chrono::duration<double>(now - measure_from_).count());
    end_ = now;
    stop_timer_.cancel();
    stop();
  }

  /// A connection is free again.
  void on_idle(connection* c) {
    if (stopping)
      return;
    if (rate_ <= 0)
      return c->start(clock_type::now());
    if (!backlog_.empty()) {
      auto due = backlog_.front();
      backlog_.pop_front();
      return c->start(due);
    }
    idle_.push_back(c);
  }

  bool closed_loop() const { return rate_ <= 0; }
  /// Whether an answer or failure at `now` counts: inside the measured window.
  bool in_window(clock_type::time_point now) const {
    return !stopping && now >= measure_from_ && now < end_;
  }

  /// The timeline's cell for an answer or failure of `op` at `now` (inside the window), or null.
  timeline_cell* cell(int op, clock_type::time_point now) {
    if (!opts.timeline)
      return nullptr;
    auto second = std::chrono::duration_cast<std::chrono::seconds>(now - measure_from_).count();
    return &stats.timeline[{static_cast<std::int64_t>(second), op}];
  }

  static clock_type::duration to_duration(double s) {
    return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s));
  }

  net::io_context ioc{1};
  tcp::resolver::results_type endpoints;
  const engine_options& opts;
  run_stats stats;
  bool stopping = false;

 private:
  clock_type::time_point due_time(std::uint64_t k) const {
    return start_ + std::chrono::nanoseconds(static_cast<std::int64_t>(interval_ns_ * k));
  }

  void tick() {
    if (stopping)
      return;
    auto now = clock_type::now();
    for (auto due = due_time(next_); due <= now && due < end_; due = due_time(++next_)) {
      if (!idle_.empty()) {
        auto* c = idle_.back();
        idle_.pop_back();
        c->start(due);
      } else {
        backlog_.push_back(due);
        stats.backlog_peak = std::max<std::uint64_t>(stats.backlog_peak, backlog_.size());
      }
    }
    auto due = due_time(next_);
    if (due >= end_)
      return;
    tick_.expires_at(due);
    tick_.async_wait([this](beast::error_code ec) {
      if (!ec)
        tick();
    });
  }

  void stop() {
    // Requests due inside the window that never got an answer.
    for (auto due : backlog_)
      if (due >= measure_from_)
        ++stats.unfinished;
    if (rate_ > 0)
      for (auto& c : conns_)
        if (c->busy())
          ++stats.unfinished;
    stopping = true;
    backlog_.clear();
    tick_.cancel();
    // Requests in flight are let finish (not counted): the users still see their answers, so
    // a write the server committed at the last moment is still acknowledged and accounted for.
    // Whatever is not answered within the request timeout is failed (an unknown outcome).
    drain_.expires_after(to_duration(opts.timeout_s));
    drain_.async_wait([this](beast::error_code ec) {
      if (!ec)
        for (auto& c : conns_)
          c->close();
    });
    maybe_drained();
  }

 public:
  /// After the window: once nothing is in flight, close everything so that run() returns.
  void maybe_drained() {
    if (!stopping)
      return;
    for (auto& c : conns_)
      if (c->busy())
        return;
    drain_.cancel();
    stop_timer_.cancel();
    for (auto& c : conns_)
      c->close();
  }

 private:
  scenario& sc_;
  std::vector<std::size_t> indices_;
  double rate_;
  double interval_ns_ = 0;
  std::vector<std::unique_ptr<connection>> conns_;
  std::vector<connection*> idle_;
  std::size_t finished_ = 0;
  std::deque<clock_type::time_point> backlog_;
  std::uint64_t next_ = 0;
  clock_type::time_point start_{}, measure_from_{}, end_{};
  net::steady_timer tick_;
  net::steady_timer stop_timer_;
  net::steady_timer drain_{ioc};
};

connection::connection(worker& w, std::unique_ptr<user> u)
  : w_(w), user_(std::move(u)), stream_(w.ioc), retry_(w.ioc) {}

void connection::start_setup() {
  in_setup_ = true;
  req_ = request{};
  if (!user_->setup(req_)) {
    in_setup_ = false;
    return;
  }
  busy_ = true;
  due_ = clock_type::now();
  connect_then_send();
}

void connection::start(clock_type::time_point due) {
  in_setup_ = false;
  req_ = request{}; // users fill in only what differs from a plain GET
  if (finished_ || !user_->next(req_)) {
    if (!finished_) {
      finished_ = true;
      w_.on_finished();
    }
    return;
  }
  busy_ = true;
  due_ = due;
  connect_then_send();
}

void connection::close() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
  retry_.cancel();
  connected_ = false;
}

void connection::connect_then_send() {
  if (connected_)
    return send();
  stream_.expires_after(worker::to_duration(w_.opts.timeout_s));
  stream_.async_connect(w_.endpoints, [this](beast::error_code ec, const tcp::endpoint&) {
    if (!ec && w_.stopping) // not sent yet: after the window, do not start anything new
      ec = net::error::operation_aborted;
    if (ec)
      return fail(classify(ec, true), true);
    beast::error_code ignored;
    stream_.socket().set_option(tcp::no_delay(true), ignored);
    connected_ = true;
    buffer_.clear();
    send();
  });
}

void connection::send() {
  wire_.clear();
  wire_.append(req_.method).append(" ").append(req_.target).append(" HTTP/1.1\r\nHost: ");
  wire_.append(w_.opts.where.host_header).append("\r\n");
  if (!req_.bearer.empty())
    wire_.append("Authorization: Bearer ").append(req_.bearer).append("\r\n");
  if (!req_.idempotency_key.empty())
    wire_.append("Idempotency-Key: ").append(req_.idempotency_key).append("\r\n");
  if (!req_.body.empty() || (req_.method != "GET" && req_.method != "HEAD")) {
    if (!req_.body.empty())
      wire_.append("Content-Type: application/json\r\n");
    wire_.append("Content-Length: ").append(std::to_string(req_.body.size())).append("\r\n");
  }
  wire_.append("\r\n").append(req_.body);
  if (w_.closed_loop())
    due_ = clock_type::now(); // closed loop: from the moment it leaves (as wrk measures)
  stream_.expires_after(worker::to_duration(w_.opts.timeout_s));
  net::async_write(stream_, net::buffer(wire_),
                   [this](beast::error_code ec, std::size_t) { on_write(ec); });
}

void connection::on_write(beast::error_code ec) {
  if (ec)
    return fail(classify(ec, false), false);
  parser_.emplace();
  parser_->body_limit(64 * 1024 * 1024);
  parser_->header_limit(64 * 1024);
  bhttp::async_read(stream_, buffer_, *parser_,
                    [this](beast::error_code ec, std::size_t n) { on_read(ec, n); });
}

void connection::on_read(beast::error_code ec, std::size_t bytes) {
  if (ec)
    return fail(classify(ec, false), false);
  auto now = clock_type::now();
  auto& res = parser_->get();
  int status = static_cast<int>(res.result_int());
  bool keep_alive = res.keep_alive();
  bool counted = w_.in_window(now);
  busy_ = false;
  bool ok;
  if (in_setup_) {
    ++w_.stats.setup_requests;
    ok = user_->on_answer(req_, status, res.body(), false);
    if (!ok)
      ++w_.stats.setup_failures;
  } else {
    ok = user_->on_answer(req_, status, res.body(), counted);
    if (counted) {
      auto latency = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - due_).count());
      auto& st = w_.stats;
      auto& op = st.ops.at(static_cast<std::size_t>(req_.op));
      st.latency.record(latency);
      op.latency.record(latency);
      if (auto* c = w_.cell(req_.op, now)) {
        c->latency.record(latency);
        c->errors += ok ? 0 : 1;
      }
      ++st.requests;
      ++op.requests;
      st.bytes_read += bytes;
      if (ok) {
        ++st.ok;
        ++op.ok;
      } else {
        ++st.by_status[status];
        ++op.by_status[status];
        if (op.samples.size() < 8 && !op.samples.count(status))
          op.samples[status] = res.body().substr(0, 300);
      }
    }
  }
  if (!keep_alive)
    close();
  finish();
}

void connection::fail(error_kind kind, bool after_connect_attempt) {
  busy_ = false;
  auto now = clock_type::now();
  if (in_setup_) {
    ++w_.stats.setup_failures;
  } else if (w_.in_window(now)) {
    ++w_.stats.by_kind[static_cast<std::size_t>(kind)];
    ++w_.stats.ops.at(static_cast<std::size_t>(req_.op)).by_kind[static_cast<std::size_t>(kind)];
    if (auto* c = w_.cell(req_.op, now))
      ++c->errors;
  }
  user_->on_failure(req_, kind);
  close();
  if (after_connect_attempt && !w_.stopping) {
    // Do not spin on a refused port: try again a little later.
    retry_.expires_after(std::chrono::milliseconds(100));
    retry_.async_wait([this](beast::error_code ec) {
      if (!ec && !w_.stopping)
        finish();
    });
    return;
  }
  finish();
}

void connection::finish() {
  if (in_setup_) {
    req_ = request{};
    if (user_->setup(req_)) {
      busy_ = true;
      due_ = clock_type::now();
      return connect_then_send();
    }
    in_setup_ = false;
    return;
  }
  if (w_.stopping)
    return w_.maybe_drained();
  w_.on_idle(this);
}

} // namespace

run_stats run_load(const engine_options& opts, scenario& sc, const run_hooks& hooks) {
  int threads = std::max(1, std::min(opts.threads, opts.connections));
  std::vector<std::unique_ptr<worker>> workers;
  for (int t = 0; t < threads; ++t) {
    std::vector<std::size_t> idx;
    for (int i = t; i < opts.connections; i += threads)
      idx.push_back(static_cast<std::size_t>(i));
    workers.push_back(std::make_unique<worker>(opts, sc, std::move(idx), opts.rate / threads));
  }
  auto on_all = [&](auto fn) {
    std::vector<std::thread> ts;
    for (auto& w : workers)
      ts.emplace_back([&w, fn] { fn(*w); });
    for (auto& t : ts)
      t.join();
  };
  if (sc.has_setup())
    on_all([](worker& w) { w.run_setup(); });
  if (hooks.after_setup)
    hooks.after_setup();
  auto t0 = clock_type::now();
  std::mutex mu;
  std::condition_variable cv;
  std::size_t done = 0;
  std::vector<std::thread> ts;
  for (auto& w : workers)
    ts.emplace_back([&w, &mu, &cv, &done] {
      w->run_measured();
      std::lock_guard lock{mu};
      ++done;
      cv.notify_all();
    });
  {
    // The hooks sample the server at the window's edges; a run that ends early (every user
    // finished) closes the window early.
    std::unique_lock lock{mu};
    auto all_done = [&] { return done == workers.size(); };
    cv.wait_until(lock, t0 + worker::to_duration(opts.warmup_s), all_done);
    if (hooks.window_start)
      hooks.window_start();
    cv.wait_until(lock, t0 + worker::to_duration(opts.warmup_s + opts.duration_s), all_done);
    if (hooks.window_end)
      hooks.window_end();
  }
  for (auto& t : ts)
    t.join();
  run_stats total;
  for (auto& w : workers)
    total.merge(w->stats);
  return total;
}

simple_response fetch(const target& where, const std::string& method, const std::string& path,
                      const std::string& body, const std::string& bearer, double timeout_s) {
  simple_response out;
  try {
    net::io_context ioc{1};
    tcp::resolver resolver{ioc};
    beast::tcp_stream stream{ioc};
    auto deadline = std::chrono::duration_cast<clock_type::duration>(
      std::chrono::duration<double>(timeout_s));
    stream.expires_after(deadline);
    bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), path, 11};
    req.set(bhttp::field::host, where.host_header);
    if (!bearer.empty())
      req.set(bhttp::field::authorization, "Bearer " + bearer);
    if (!body.empty()) {
      req.set(bhttp::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(256 * 1024 * 1024);
    beast::error_code result;
    stream.async_connect(
      resolver.resolve(where.host, where.port), [&](beast::error_code ec, const tcp::endpoint&) {
        if (ec)
          return void(result = ec);
        bhttp::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
          if (ec)
            return void(result = ec);
          bhttp::async_read(stream, buffer, parser,
                            [&](beast::error_code ec, std::size_t) { result = ec; });
        });
      });
    ioc.run();
    if (result) {
      out.error = result.message();
      return out;
    }
    out.status = static_cast<int>(parser.get().result_int());
    out.body = std::move(parser.get().body());
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

} // namespace emporium::bench
