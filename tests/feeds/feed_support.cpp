#include "feeds/feed_support.hpp"

#include "support/test_env.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <deque>
#include <random>
#include <sstream>
#include <stdexcept>

namespace emporium::feed_test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

// -- ws_subscriber ------------------------------------------------------------------------------

struct ws_subscriber::impl {
  std::string host;
  std::uint16_t port = 0;
  options opts;
  net::io_context ioc{1};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  websocket::stream<beast::tcp_stream> ws{ioc};
  beast::flat_buffer buf;
  std::deque<std::string> outbox;
  bool writing = false;
  bool reading = false;
  std::thread thread;

  mutable std::mutex mtx;
  std::condition_variable cv;
  std::vector<json> messages;
  bool ended = false;
  int close_code = 0;
  std::string end_reason;

  void finish(const std::string& why, int code) {
    std::lock_guard lock{mtx};
    if (!ended) {
      ended = true;
      close_code = code;
      end_reason = why;
    }
    cv.notify_all();
  }

  void read() {
    reading = true;
    ws.async_read(buf, [this](beast::error_code ec, std::size_t) {
      if (ec) {
        if (ec == websocket::error::closed)
          return finish("close frame " + std::to_string(ws.reason().code) + " "
                          + std::string{ws.reason().reason.c_str()},
                        static_cast<int>(ws.reason().code));
        return finish(ec.message(), 0);
      }
      auto text = beast::buffers_to_string(buf.data());
      buf.consume(buf.size());
      auto j = json::parse(text, nullptr, false);
      if (j.is_discarded())
        j = json{{"unparsed", text}};
      {
        std::lock_guard lock{mtx};
        messages.push_back(std::move(j));
      }
      cv.notify_all();
      read();
    });
  }

  void write_next() {
    if (writing || outbox.empty())
      return;
    writing = true;
    ws.text(true);
    ws.async_write(net::buffer(outbox.front()), [this](beast::error_code ec, std::size_t) {
      writing = false;
      outbox.pop_front();
      if (ec)
        return; // the read side reports the end
      write_next();
    });
  }

  void stop() {
    if (!thread.joinable())
      return;
    net::post(ioc, [this] {
      beast::error_code ignored;
      auto& sock = beast::get_lowest_layer(ws).socket();
      sock.shutdown(tcp::socket::shutdown_both, ignored);
      sock.close(ignored);
      work.reset();
    });
    thread.join();
    finish("dropped by the test", 0);
  }
};

ws_subscriber::ws_subscriber(std::string host, std::uint16_t port, options o)
  : impl_(std::make_unique<impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->opts = std::move(o);
}

ws_subscriber::~ws_subscriber() {
  impl_->stop();
}

void ws_subscriber::connect() {
  auto& i = *impl_;
  tcp::endpoint ep{net::ip::make_address(i.host), i.port};
  auto& sock = beast::get_lowest_layer(i.ws).socket();
  sock.open(ep.protocol());
  if (i.opts.rcvbuf > 0)
    sock.set_option(net::socket_base::receive_buffer_size(i.opts.rcvbuf));
  beast::get_lowest_layer(i.ws).expires_after(std::chrono::seconds{10});
  beast::get_lowest_layer(i.ws).connect(ep);
  auto token = i.opts.token;
  i.ws.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
    if (!token.empty())
      req.set(bhttp::field::authorization, "Bearer " + token);
  }));
  websocket::response_type res;
  beast::error_code ec;
  i.ws.handshake(res, i.host + ":" + std::to_string(i.port), "/ws", ec);
  if (ec)
    throw std::runtime_error("WebSocket upgrade refused: " + ec.message() + ": "
                             + std::to_string(res.result_int()) + " " + res.body());
  beast::get_lowest_layer(i.ws).expires_never();
  i.work.emplace(i.ioc.get_executor());
  if (i.opts.read)
    i.read();
  i.thread = std::thread{[&i] { i.ioc.run(); }};
}

void ws_subscriber::send(const json& message) {
  auto& i = *impl_;
  net::post(i.ioc, [&i, text = message.dump()] {
    i.outbox.push_back(text);
    i.write_next();
  });
}

void ws_subscriber::subscribe(const std::string& topic, std::optional<std::int64_t> after) {
  json m{{"subscribe", topic}};
  if (after)
    m["after"] = *after;
  send(m);
}

void ws_subscriber::start_reading() {
  auto& i = *impl_;
  net::post(i.ioc, [&i] {
    if (!i.reading)
      i.read();
  });
}

void ws_subscriber::drop() {
  impl_->stop();
}

bool ws_subscriber::wait(const std::function<bool(const std::vector<json>&)>& done, ms limit) {
  auto& i = *impl_;
  std::unique_lock lock{i.mtx};
  i.cv.wait_for(lock, limit, [&] { return done(i.messages) || i.ended; });
  return done(i.messages);
}

json ws_subscriber::wait_subscribed(const std::string& topic, ms limit) {
  json found;
  wait(
    [&](const std::vector<json>& all) {
      for (const auto& m : all)
        if (m.is_object() && m.value("type", "") == "subscribed" && m.value("topic", "") == topic) {
          found = m;
          return true;
        }
      return false;
    },
    limit);
  return found;
}

bool ws_subscriber::wait_seq(const std::string& topic, std::int64_t seq, ms limit) {
  return wait(
    [&](const std::vector<json>& all) {
      for (auto it = all.rbegin(); it != all.rend(); ++it)
        if (it->is_object() && it->contains("data") && it->value("topic", "") == topic
            && it->value("seq", std::int64_t{-1}) >= seq)
          return true;
      return false;
    },
    limit);
}

std::vector<json> ws_subscriber::messages() const {
  std::lock_guard lock{impl_->mtx};
  return impl_->messages;
}

std::vector<json> ws_subscriber::events(const std::string& topic) const {
  std::vector<json> out;
  for (auto& m : messages())
    if (m.is_object() && m.contains("seq") && m.contains("data") && m.value("topic", "") == topic)
      out.push_back(m);
  return out;
}

std::vector<std::int64_t> ws_subscriber::seqs(const std::string& topic) const {
  std::vector<std::int64_t> out;
  for (auto& e : events(topic))
    out.push_back(e.value("seq", std::int64_t{-1}));
  return out;
}

std::int64_t ws_subscriber::last_seq(const std::string& topic) const {
  std::int64_t last = -1;
  for (auto s : seqs(topic))
    last = std::max(last, s);
  return last;
}

bool ws_subscriber::ended() const {
  std::lock_guard lock{impl_->mtx};
  return impl_->ended;
}

int ws_subscriber::close_code() const {
  std::lock_guard lock{impl_->mtx};
  return impl_->close_code;
}

std::string ws_subscriber::end_reason() const {
  std::lock_guard lock{impl_->mtx};
  return impl_->end_reason;
}

// -- sse_subscriber -----------------------------------------------------------------------------

struct sse_subscriber::impl {
  std::string host;
  std::uint16_t port = 0;
  std::string target;
  test::header_map headers;
  net::io_context ioc{1};
  tcp::socket sock{ioc};
  std::thread thread;

  mutable std::mutex mtx;
  std::condition_variable cv;
  int status = 0;
  std::map<std::string, std::string> head;
  std::string body;
  bool ended = false;

  void drop() {
    if (sock.is_open())
      ::shutdown(sock.native_handle(), SHUT_RDWR); // wakes the reader thread's blocking read
    if (thread.joinable())
      thread.join();
    beast::error_code ignored;
    sock.close(ignored);
  }
};

sse_subscriber::sse_subscriber(std::string host, std::uint16_t port, std::string target,
                               test::header_map headers)
  : impl_(std::make_unique<impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->target = std::move(target);
  impl_->headers = std::move(headers);
}

sse_subscriber::~sse_subscriber() {
  impl_->drop();
}

int sse_subscriber::start() {
  auto& i = *impl_;
  i.sock.connect(tcp::endpoint{net::ip::make_address(i.host), i.port});
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, i.target, 11};
  req.set(bhttp::field::host, i.host + ":" + std::to_string(i.port));
  req.set(bhttp::field::accept, "text/event-stream");
  for (const auto& [k, v] : i.headers)
    req.set(k, v);
  bhttp::write(i.sock, req);
  auto parser = std::make_shared<bhttp::response_parser<bhttp::buffer_body>>();
  parser->body_limit(boost::none);
  auto buffer = std::make_shared<beast::flat_buffer>();
  bhttp::read_header(i.sock, *buffer, *parser);
  {
    std::lock_guard lock{i.mtx};
    i.status = static_cast<int>(parser->get().result_int());
    for (const auto& f : parser->get()) {
      std::string name{f.name_string()};
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      i.head[name] = std::string{f.value()};
    }
  }
  auto read_body = [&i, parser, buffer] {
    char chunk[8192];
    while (!parser->is_done()) {
      parser->get().body().data = chunk;
      parser->get().body().size = sizeof chunk;
      beast::error_code ec;
      bhttp::read_some(i.sock, *buffer, *parser, ec); // what has come, not a full buffer
      auto got = sizeof chunk - parser->get().body().size;
      {
        std::lock_guard lock{i.mtx};
        i.body.append(chunk, got);
      }
      i.cv.notify_all();
      if (ec && ec != bhttp::error::need_buffer)
        break;
    }
    std::lock_guard lock{i.mtx};
    i.ended = true;
    i.cv.notify_all();
  };
  if (i.status != 200) {
    read_body();
    return i.status;
  }
  i.thread = std::thread{read_body};
  return i.status;
}

int sse_subscriber::status() const {
  std::lock_guard lock{impl_->mtx};
  return impl_->status;
}

std::string sse_subscriber::header(const std::string& lower_name) const {
  std::lock_guard lock{impl_->mtx};
  auto it = impl_->head.find(lower_name);
  return it == impl_->head.end() ? std::string{} : it->second;
}

std::string sse_subscriber::raw() const {
  std::lock_guard lock{impl_->mtx};
  return impl_->body;
}

std::vector<sse_event> sse_subscriber::events() const {
  std::vector<sse_event> out;
  auto text = raw();
  std::size_t pos = 0;
  for (;;) {
    auto end = text.find("\n\n", pos);
    if (end == std::string::npos)
      break;
    std::istringstream block{text.substr(pos, end - pos)};
    pos = end + 2;
    sse_event e;
    bool any = false;
    std::string line;
    while (std::getline(block, line)) {
      auto field = [&](const char* name, std::string& into) {
        std::string prefix = std::string{name} + ": ";
        if (line.rfind(prefix, 0) == 0) {
          into = line.substr(prefix.size());
          any = true;
        }
      };
      field("id", e.id);
      field("event", e.event);
      field("data", e.data);
    }
    if (any && !e.id.empty())
      out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::int64_t> sse_subscriber::ids() const {
  std::vector<std::int64_t> out;
  for (const auto& e : events())
    out.push_back(std::stoll(e.id));
  return out;
}

std::int64_t sse_subscriber::last_id() const {
  std::int64_t last = -1;
  for (auto id : ids())
    last = std::max(last, id);
  return last;
}

bool sse_subscriber::wait_id(std::int64_t id, ms limit) {
  auto until = steady::now() + limit;
  while (last_id() < id) {
    std::unique_lock lock{impl_->mtx};
    if (impl_->ended || steady::now() >= until)
      break;
    impl_->cv.wait_until(lock, std::min(until, steady::now() + ms{50}));
  }
  return last_id() >= id;
}

bool sse_subscriber::wait_text(const std::string& text, ms limit) {
  auto& i = *impl_;
  std::unique_lock lock{i.mtx};
  i.cv.wait_for(lock, limit, [&] { return i.body.find(text) != std::string::npos || i.ended; });
  return i.body.find(text) != std::string::npos;
}

void sse_subscriber::drop() {
  impl_->drop();
}

// -- order_churn --------------------------------------------------------------------------------

order_churn::order_churn(std::vector<faults::endpoint> targets,
                         std::vector<faults::shopper> shoppers, std::string product_id)
  : targets_(std::move(targets)), shoppers_(std::move(shoppers)), product_(std::move(product_id)) {}

order_churn::~order_churn() {
  stop();
}

void order_churn::start() {
  for (std::size_t i = 0; i < shoppers_.size(); ++i)
    threads_.emplace_back([this, i] { run(i); });
}

void order_churn::stop() {
  stop_ = true;
  for (auto& t : threads_)
    if (t.joinable())
      t.join();
  threads_.clear();
}

std::map<std::string, std::size_t> order_churn::statuses() const {
  std::lock_guard lock{mtx_};
  return statuses_;
}

void order_churn::run(std::size_t index) {
  std::mt19937 rng{static_cast<unsigned>(index * 7919 + 17)};
  std::size_t target = index % targets_.size();
  auto client = std::make_unique<test::http_client>(targets_[target].host, targets_[target].port,
                                                    ms{15'000});
  const auto& who = shoppers_[index];
  auto count = [this](const std::string& what, int status) {
    std::lock_guard lock{mtx_};
    ++statuses_[what + " " + std::to_string(status)];
  };
  auto next_target = [&] {
    target = (target + 1) % targets_.size();
    client = std::make_unique<test::http_client>(targets_[target].host, targets_[target].port,
                                                 ms{15'000});
    std::this_thread::sleep_for(ms{50});
  };
  bool cancel_next = false;
  while (!stop_) {
    auto units = std::uniform_int_distribution<int>{1, 3}(rng);
    auto headers = who.auth();
    headers["Idempotency-Key"] = test::unique("feed-order");
    test::http_response r;
    try {
      r = client->request("POST", "/orders", faults::order_body({{product_, units}}).dump(),
                          headers);
    } catch (const std::exception&) {
      count("POST /orders", 0);
      next_target();
      continue;
    }
    count("POST /orders", r.status);
    if (r.status != 201) {
      std::this_thread::sleep_for(ms{20});
      continue;
    }
    ++placed_;
    cancel_next = !cancel_next;
    if (!cancel_next)
      continue;
    auto id = r.json().at("id").get<std::string>();
    try {
      auto c = client->request("POST", "/orders/" + id + "/cancel", "", who.auth());
      count("POST /orders/{id}/cancel", c.status);
      if (c.status == 200)
        ++cancelled_;
    } catch (const std::exception&) {
      count("POST /orders/{id}/cancel", 0);
      next_target();
    }
  }
}

// -- the outbox and the API ---------------------------------------------------------------------

std::map<std::int64_t, json> outbox(pqxx::connection& conn, const std::string& entity) {
  std::map<std::int64_t, json> out;
  pqxx::read_transaction tx{conn};
  for (const auto& row : tx.exec_params(
         "SELECT seq, payload::text FROM events WHERE entity = $1 ORDER BY seq", entity))
    out.emplace(row[0].as<std::int64_t>(), json::parse(row[1].as<std::string>()));
  return out;
}

std::int64_t outbox_max_seq(pqxx::connection& conn, const std::string& entity) {
  pqxx::read_transaction tx{conn};
  return tx.exec_params("SELECT coalesce(max(seq), 0) FROM events WHERE entity = $1", entity)
    .at(0)[0]
    .as<std::int64_t>();
}

std::string consecutive(const std::vector<std::int64_t>& seqs, std::int64_t from, std::int64_t to) {
  std::int64_t want = from + 1;
  for (std::size_t i = 0; i < seqs.size(); ++i, ++want)
    if (seqs[i] != want) {
      std::ostringstream out;
      out << "position " << i << ": seq " << seqs[i] << " where " << want << " was due (after "
          << (i ? seqs[i - 1] : from) << ")";
      return out.str();
    }
  if (want != to + 1) {
    std::ostringstream out;
    out << "ends at seq " << want - 1 << ", the outbox at " << to;
    return out.str();
  }
  return {};
}

std::int64_t stock_of(const std::string& host, std::uint16_t port, const std::string& product) {
  try {
    auto r = test::http_request(host, port, "GET", "/products/" + product);
    return r.status == 200 ? r.json().value("stock", std::int64_t{-1}) : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

double metric_of(const std::string& host, std::uint16_t port, const std::string& name) {
  try {
    auto r = test::http_request(host, port, "GET", "/metrics");
    return r.status == 200 ? faults::metric(r.body, name) : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

} // namespace emporium::feed_test
