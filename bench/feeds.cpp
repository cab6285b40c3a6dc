#include "bench/feeds.hpp"

#include "bench/histogram.hpp"
#include "bench/procstat.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace emporium::bench::feeds {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using clock_type = std::chrono::steady_clock;
using json = nlohmann::json;

std::uint64_t raise_open_files() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  return lim.rlim_cur;
}

double metric_value(const std::string& text, const std::string& name) {
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.compare(0, name.size(), name) != 0)
      continue;
    if (line.size() <= name.size() || line[name.size()] != ' ')
      continue;
    try {
      return std::stod(line.substr(name.size() + 1));
    } catch (const std::exception&) {
      return -1;
    }
  }
  return -1;
}

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
    .count();
}

double ms(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

json latency_json(const histogram& h) {
  return {{"p50", ms(h.value_at_percentile(50))},
          {"p90", ms(h.value_at_percentile(90))},
          {"p99", ms(h.value_at_percentile(99))},
          {"p999", ms(h.value_at_percentile(99.9))},
          {"max", ms(h.max())},
          {"min", ms(h.min())},
          {"mean", h.mean() / 1e6}};
}

/// What every subscriber shares: the changes' send times, counters the main thread waits on.
struct shared_state {
  const subscribe_options& o;
  std::int64_t stock_base = 0;
  std::vector<std::atomic<std::int64_t>> sent_ns; ///< per change: when its PATCH left (0: not)
  std::atomic<std::int64_t> acknowledged{0};
  std::atomic<std::int64_t> failed{0};
  std::atomic<std::int64_t> delivered{0};               ///< events matched to a change
  std::vector<std::atomic<std::int64_t>> subscribed_to; ///< per product: acknowledged subscribers
  explicit shared_state(const subscribe_options& opts)
    : o(opts),
      sent_ns(static_cast<std::size_t>(opts.changes)),
      subscribed_to(opts.product_ids.size()) {}
};

struct io_worker;

/// One WebSocket subscriber.
class subscriber {
 public:
  subscriber(io_worker& w, std::size_t product) : product_(product), w_(w) {}
  void start();
  void close();

  enum class state { idle, connecting, subscribing, subscribed, failed, closed };
  state st = state::idle;
  std::int64_t first_seq = -1; ///< the seq the subscription started at
  std::int64_t last_seq = -1;
  std::uint64_t gaps = 0;   ///< an event whose seq was not last + 1
  std::uint64_t events = 0; ///< every event frame
  std::vector<bool> seen;   ///< per change of this subscriber's product
  std::string failure;      ///< why it failed ("connect: ...", "error 503", "closed 1013")
  std::size_t product_;

 private:
  void read();
  void on_message(const std::string& text);
  void fail(std::string why);

  io_worker& w_;
  std::unique_ptr<websocket::stream<beast::tcp_stream>> ws_;
  beast::flat_buffer buf_;
  std::string out_;
};

/// One io_context thread and its share of the subscribers.
struct io_worker {
  shared_state& s;
  net::io_context ioc{1};
  tcp::resolver::results_type endpoints;
  std::vector<std::unique_ptr<subscriber>> subs;
  std::size_t next = 0;
  histogram latency;
  std::thread thread;

  explicit io_worker(shared_state& st) : s(st) {
    tcp::resolver resolver{ioc};
    endpoints = resolver.resolve(s.o.where.host, s.o.where.port);
  }
  /// Starts the next subscriber, if any is left.
  void launch_next() {
    if (next < subs.size())
      subs[next++]->start();
  }
};

void subscriber::start() {
  st = state::connecting;
  ws_ = std::make_unique<websocket::stream<beast::tcp_stream>>(w_.ioc);
  ws_->set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
  auto& lowest = beast::get_lowest_layer(*ws_);
  lowest.expires_after(std::chrono::seconds{30});
  lowest.async_connect(w_.endpoints, [this](beast::error_code ec, const tcp::endpoint&) {
    if (ec)
      return fail("connect: " + ec.message());
    auto& lowest = beast::get_lowest_layer(*ws_);
    lowest.expires_never();
    beast::error_code ignored;
    lowest.socket().set_option(tcp::no_delay(true), ignored);
    ws_->async_handshake(w_.s.o.where.host_header, "/ws", [this](beast::error_code ec) {
      if (ec)
        return fail("handshake: " + ec.message());
      st = state::subscribing;
      out_ = json{{"subscribe", "product:" + w_.s.o.product_ids[product_]}}.dump();
      ws_->text(true);
      ws_->async_write(net::buffer(out_), [this](beast::error_code ec, std::size_t) {
        if (ec)
          return fail("write: " + ec.message());
      });
      read();
    });
  });
}

void subscriber::read() {
  ws_->async_read(buf_, [this](beast::error_code ec, std::size_t) {
    if (ec) {
      if (ec == websocket::error::closed)
        return fail("closed " + std::to_string(static_cast<int>(ws_->reason().code)));
      if (st == state::closed)
        return;
      return fail("read: " + ec.message());
    }
    on_message(beast::buffers_to_string(buf_.data()));
    buf_.consume(buf_.size());
    if (st == state::subscribing || st == state::subscribed)
      read();
  });
}

/// The integer after `"key":` in `text` (the first occurrence), or -1. Events are scanned, not
/// parsed: 10,000 subscribers read 10,000 copies of every event, and a full JSON parse of each
/// would make the generator's thread the bottleneck of the fan-out it measures.
std::int64_t scan_integer(const std::string& text, std::string_view key) {
  auto at = text.find(key);
  if (at == std::string::npos)
    return -1;
  at += key.size();
  while (at < text.size() && text[at] == ' ') // jsonb's text form puts a space after ':'
    ++at;
  if (at >= text.size() || text[at] < '0' || text[at] > '9')
    return -1;
  return std::strtoll(text.c_str() + at, nullptr, 10);
}

void subscriber::on_message(const std::string& text) {
  auto now = now_ns();
  if (text.rfind("{\"topic\":", 0) != 0) {
    // Not an event (feed_event::ws_text starts with the topic): an answer of the protocol.
    auto j = json::parse(text, nullptr, false);
    if (!j.is_object())
      return fail("not JSON: " + text.substr(0, 120));
    auto type = j.value("type", std::string{});
    if (type == "subscribed" && st == state::subscribing) {
      first_seq = last_seq = j.value("seq", std::int64_t{-1});
      st = state::subscribed;
      ++w_.s.acknowledged;
      ++w_.s.subscribed_to[product_];
      w_.launch_next();
      return;
    }
    if (type == "error")
      return fail("error " + std::to_string(j.value("status", 0)) + ": " + j.value("detail", ""));
    return; // unsubscribed or something newer: not an event
  }
  auto seq = scan_integer(text, "\"seq\":");
  ++events;
  if (seq != last_seq + 1)
    ++gaps;
  last_seq = std::max(last_seq, seq);
  auto k = scan_integer(text, "\"stock\":") - w_.s.stock_base;
  auto& o = w_.s.o;
  if (k < 0 || k >= o.changes)
    return; // not one of this run's changes
  auto kk = static_cast<std::size_t>(k);
  if (kk % o.product_ids.size() != product_ || seen[kk])
    return;
  seen[kk] = true;
  auto sent = w_.s.sent_ns[kk].load();
  if (sent > 0 && now > sent)
    w_.latency.record(static_cast<std::uint64_t>(now - sent));
  ++w_.s.delivered;
}

void subscriber::fail(std::string why) {
  if (st == state::failed || st == state::closed)
    return;
  bool before_ack = st != state::subscribed;
  st = state::failed;
  failure = std::move(why);
  if (before_ack) {
    ++w_.s.failed;
    w_.launch_next();
  }
}

void subscriber::close() {
  if (st != state::failed)
    st = state::closed;
  if (ws_) {
    beast::error_code ignored;
    beast::get_lowest_layer(*ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(*ws_).close();
  }
}

/// Admin PATCHes of one product's stock on one kept-alive connection.
class patcher {
 public:
  explicit patcher(const subscribe_options& o) : o_(o), stream_(ioc_) {}
  /// Sends the PATCH (its send time stored first) and reads the answer; the status.
  int patch(const std::string& id, std::int64_t stock, std::atomic<std::int64_t>& sent_at) {
    bhttp::request<bhttp::string_body> req{bhttp::verb::patch, "/products/" + id, 11};
    req.set(bhttp::field::host, o_.where.host_header);
    req.set(bhttp::field::authorization, "Bearer " + o_.admin_key);
    req.set(bhttp::field::content_type, "application/json");
    req.body() = json{{"stock", stock}}.dump();
    req.prepare_payload();
    for (int attempt = 0; attempt < 2; ++attempt) {
      try {
        if (!connected_) {
          tcp::resolver resolver{ioc_};
          stream_.connect(resolver.resolve(o_.where.host, o_.where.port));
          stream_.socket().set_option(tcp::no_delay(true));
          connected_ = true;
        }
        sent_at.store(now_ns());
        bhttp::write(stream_, req);
        beast::flat_buffer buffer;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(stream_, buffer, res);
        if (!res.keep_alive())
          reset();
        last_body_ = res.body();
        return static_cast<int>(res.result_int());
      } catch (const std::exception& e) {
        last_body_ = e.what();
        reset();
      }
    }
    return 0;
  }
  const std::string& last_body() const { return last_body_; }

 private:
  void reset() {
    beast::error_code ignored;
    stream_.socket().close(ignored);
    connected_ = false;
  }
  const subscribe_options& o_;
  net::io_context ioc_;
  beast::tcp_stream stream_;
  bool connected_ = false;
  std::string last_body_;
};

std::int64_t rss_kib(int pid) {
  return pid > 0 ? procstat::status_kib(pid, "VmRSS") : -1;
}

} // namespace

json run_subscribe(const subscribe_options& o) {
  if (o.product_ids.empty())
    throw std::invalid_argument("subscribe: no product to subscribe to");
  if (o.admin_key.empty())
    throw std::invalid_argument(
      "subscribe: the stock changes need the admin key (--admin-key or EMPORIUM_ADMIN_KEY)");
  auto files = raise_open_files();
  if (files < static_cast<std::uint64_t>(o.subscribers) + 64)
    std::cerr << "subscribe: the open-files limit is " << files << ", fewer than " << o.subscribers
              << " subscribers need\n";

  shared_state s{o};
  std::mt19937_64 rng{std::random_device{}()};
  // Stock values no other run or seed uses: change k sets base + k.
  s.stock_base = 100'000'000 + static_cast<std::int64_t>(rng() % 800'000) * 1'000;

  int threads = std::max(1, std::min(o.threads, o.subscribers));
  std::vector<std::unique_ptr<io_worker>> workers;
  for (int t = 0; t < threads; ++t)
    workers.push_back(std::make_unique<io_worker>(s));
  for (int i = 0; i < o.subscribers; ++i) {
    auto& w = *workers[static_cast<std::size_t>(i % threads)];
    auto product = static_cast<std::size_t>(i) % o.product_ids.size();
    w.subs.push_back(std::make_unique<subscriber>(w, product));
    w.subs.back()->seen.assign(static_cast<std::size_t>(o.changes), false);
  }

  json result;
  auto rss_before = rss_kib(o.server_pid);
  auto t0 = clock_type::now();
  for (auto& w : workers) {
    auto per_thread = std::max(1, o.connect_parallel / threads);
    net::post(w->ioc, [w = w.get(), per_thread] {
      for (int i = 0; i < per_thread; ++i)
        w->launch_next();
    });
    w->thread = std::thread{[w = w.get()] {
      auto guard = net::make_work_guard(w->ioc);
      w->ioc.run();
    }};
  }

  // Every subscriber acknowledged (or failed), within timeout_s per 1,000 of them.
  auto subscribe_limit = t0
                         + std::chrono::duration_cast<clock_type::duration>(
                           std::chrono::duration<double>(o.timeout_s
                                                         * std::max(1.0, o.subscribers / 1000.0)));
  auto progress = t0;
  while (s.acknowledged + s.failed < o.subscribers && clock_type::now() < subscribe_limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
    if (clock_type::now() - progress > std::chrono::seconds{5}) {
      progress = clock_type::now();
      std::cerr << "  " << s.acknowledged << " subscribed, " << s.failed << " failed of "
                << o.subscribers << "\n";
    }
  }
  auto subscribe_s = std::chrono::duration<double>(clock_type::now() - t0).count();
  std::this_thread::sleep_for(std::chrono::seconds{1}); // let the server's allocations settle
  auto rss_subscribed = rss_kib(o.server_pid);
  std::cerr << "subscribe: " << s.acknowledged << " of " << o.subscribers << " subscribed in "
            << subscribe_s << " s (" << s.failed << " failed)\n";

  // The changes, a fixed interval apart.
  patcher p{o};
  std::map<int, std::uint64_t> patch_status;
  std::string patch_sample;
  auto interval = std::chrono::duration_cast<clock_type::duration>(
    std::chrono::duration<double, std::milli>(o.interval_ms));
  auto due = clock_type::now();
  for (int k = 0; k < o.changes; ++k) {
    std::this_thread::sleep_until(due);
    due += interval;
    const auto& id = o.product_ids[static_cast<std::size_t>(k) % o.product_ids.size()];
    int status = p.patch(id, s.stock_base + k, s.sent_ns[static_cast<std::size_t>(k)]);
    ++patch_status[status];
    if (status != 200) {
      s.sent_ns[static_cast<std::size_t>(k)] = 0; // not a change: expect no event for it
      if (patch_sample.empty())
        patch_sample = std::to_string(status) + " " + p.last_body().substr(0, 300);
    }
  }
  auto changes_done = clock_type::now();

  // Expected deliveries: every subscribed subscriber, every change of its product that was
  // applied. Wait for them (up to timeout_s after the last change).
  std::int64_t expected = 0;
  for (int k = 0; k < o.changes; ++k)
    if (s.sent_ns[static_cast<std::size_t>(k)] > 0)
      expected += s.subscribed_to[static_cast<std::size_t>(k) % o.product_ids.size()].load();
  auto deliver_limit = changes_done
                       + std::chrono::duration_cast<clock_type::duration>(
                         std::chrono::duration<double>(o.timeout_s));
  while (s.delivered < expected && clock_type::now() < deliver_limit)
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  std::this_thread::sleep_for(std::chrono::milliseconds{200}); // late duplicates or gaps show
  auto rss_end = rss_kib(o.server_pid);

  for (auto& w : workers)
    net::post(w->ioc, [w = w.get()] {
      for (auto& sub : w->subs)
        sub->close();
      w->ioc.stop();
    });
  for (auto& w : workers)
    w->thread.join();

  histogram latency;
  std::uint64_t gaps = 0, gapped_subscribers = 0, events = 0, missing = 0, dropped = 0;
  std::map<std::string, std::uint64_t> failures;
  std::string failure_sample;
  for (auto& w : workers) {
    latency.merge(w->latency);
    for (auto& sub : w->subs) {
      events += sub->events;
      gaps += sub->gaps;
      gapped_subscribers += sub->gaps > 0;
      if (sub->first_seq >= 0) {
        for (int k = 0; k < o.changes; ++k) {
          auto kk = static_cast<std::size_t>(k);
          if (kk % o.product_ids.size() == sub->product_ && s.sent_ns[kk] > 0 && !sub->seen[kk])
            ++missing;
        }
        if (sub->st == subscriber::state::failed)
          ++dropped; // subscribed, then closed or refused by the server
      }
      if (sub->st == subscriber::state::failed) {
        auto key = sub->failure.substr(0, sub->failure.find(':'));
        ++failures[key];
        if (failure_sample.empty())
          failure_sample = sub->failure;
      }
    }
  }

  result["subscribers"] = o.subscribers;
  result["products"] = o.product_ids.size();
  result["threads"] = threads;
  result["open_files_limit"] = files;
  result["subscribed"] = s.acknowledged.load();
  result["subscribe_failed"] = s.failed.load();
  result["subscribe_seconds"] = subscribe_s;
  json fail_json = json::object();
  for (auto& [k, n] : failures)
    fail_json[k] = n;
  result["failures"] = fail_json;
  if (!failure_sample.empty())
    result["failure_sample"] = failure_sample;
  json status_json = json::object();
  for (auto& [k, n] : patch_status)
    status_json[std::to_string(k)] = n;
  result["changes"] = {
    {"asked", o.changes},
    {"interval_ms", o.interval_ms},
    {"by_status", status_json},
    {"seconds", std::chrono::duration<double>(changes_done - t0).count() - subscribe_s}};
  if (!patch_sample.empty())
    result["changes"]["error_sample"] = patch_sample;
  result["deliveries"] = {{"expected", expected},
                          {"received", s.delivered.load()},
                          {"missing", missing},
                          {"events", events},
                          {"seq_gaps", gaps},
                          {"subscribers_with_gaps", gapped_subscribers},
                          {"subscribers_dropped", dropped}};
  result["fanout_latency_ms"] = latency_json(latency);
  json curve = json::array();
  for (auto& [pct, v] : latency.percentile_curve())
    curve.push_back({pct, ms(v)});
  result["percentiles"] = curve;
  if (o.server_pid > 0) {
    auto acked = std::max<std::int64_t>(1, s.acknowledged.load());
    result["server"] = {
      {"pid", o.server_pid},
      {"vm_rss_kib_before", rss_before},
      {"vm_rss_kib_subscribed", rss_subscribed},
      {"vm_rss_kib_end", rss_end},
      {"vm_hwm_kib", procstat::status_kib(o.server_pid, "VmHWM")},
      {"bytes_per_subscriber",
       rss_before >= 0 && rss_subscribed >= 0
         ? static_cast<double>(rss_subscribed - rss_before) * 1024.0 / static_cast<double>(acked)
         : -1.0}};
  }
  bool passed = s.acknowledged == o.subscribers && missing == 0 && gaps == 0
                && patch_status.size() == 1 && patch_status.count(200) == 1;
  result["passed"] = passed;
  return result;
}

// -- the stalled subscriber -------------------------------------------------------------------

struct stalled_subscriber::impl {
  target where;
  std::string topic;
  net::io_context ioc{1};
  websocket::stream<beast::tcp_stream> ws{ioc};
  int rcvbuf = 0;
};

stalled_subscriber::stalled_subscriber(const target& where, std::string topic)
  : impl_(std::make_unique<impl>()) {
  impl_->where = where;
  impl_->topic = std::move(topic);
}

stalled_subscriber::~stalled_subscriber() {
  beast::error_code ignored;
  beast::get_lowest_layer(impl_->ws).socket().close(ignored);
}

void stalled_subscriber::start() {
  auto& i = *impl_;
  tcp::resolver resolver{i.ioc};
  auto endpoints = resolver.resolve(i.where.host, i.where.port);
  auto& sock = beast::get_lowest_layer(i.ws).socket();
  // The receive buffer is set before connecting: it decides the window offered in the SYN.
  sock.open(endpoints.begin()->endpoint().protocol());
  sock.set_option(net::socket_base::receive_buffer_size(1));
  net::socket_base::receive_buffer_size got;
  sock.get_option(got);
  i.rcvbuf = got.value();
  sock.connect(endpoints.begin()->endpoint());
  i.ws.handshake(i.where.host_header, "/ws");
  i.ws.text(true);
  i.ws.write(net::buffer(json{{"subscribe", i.topic}}.dump()));
}

json stalled_subscriber::finish(double drain_timeout_s) {
  auto& i = *impl_;
  json out{{"topic", i.topic}, {"rcvbuf_bytes", i.rcvbuf}};
  std::uint64_t frames = 0, events = 0, gaps = 0;
  std::int64_t last = -1;
  bool closed = false;
  int close_code = 0;
  std::string ended;
  beast::flat_buffer buf;
  std::function<void()> read = [&] {
    i.ws.async_read(buf, [&](beast::error_code ec, std::size_t) {
      if (ec) {
        if (ec == websocket::error::closed) {
          closed = true;
          close_code = static_cast<int>(i.ws.reason().code);
        } else {
          ended = ec.message();
          closed = ec == net::error::eof || ec == net::error::connection_reset;
        }
        return;
      }
      ++frames;
      auto j = json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
      buf.consume(buf.size());
      if (j.is_object() && j.contains("data")) {
        auto seq = j.value("seq", std::int64_t{-1});
        if (last >= 0 && seq != last + 1)
          ++gaps;
        last = seq;
        ++events;
      } else if (j.is_object() && j.value("type", "") == "subscribed") {
        last = j.value("seq", std::int64_t{-1});
      }
      read();
    });
  };
  read();
  i.ioc.run_for(std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::duration<double>(drain_timeout_s)));
  out["frames"] = frames;
  out["events"] = events;
  out["seq_gaps"] = gaps;
  out["closed_by_server"] = closed;
  out["close_code"] = close_code;
  if (!ended.empty())
    out["ended"] = ended;
  out["dropped"] = closed && close_code == 1013;
  return out;
}

} // namespace emporium::bench::feeds
