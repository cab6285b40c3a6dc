#include "e2e/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cctype>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace emporium::test {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

/// The connection is gone: the peer closed or reset it.
bool is_closed_error(const error_code& ec) {
  return ec == net::error::eof || ec == bhttp::error::end_of_stream
         || ec == net::error::connection_reset || ec == net::error::broken_pipe
         || ec == net::error::not_connected || ec == net::error::connection_aborted
         || ec == bhttp::error::partial_message;
}

} // namespace

// -- http_response ------------------------------------------------------------------------------

nlohmann::json http_response::json() const {
  try {
    return nlohmann::json::parse(body);
  } catch (const std::exception& e) {
    throw std::runtime_error("the answer (status " + std::to_string(status)
                             + ") is not JSON: " + e.what() + "; body: " + body.substr(0, 500));
  }
}

std::string http_response::header(const std::string& name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string{} : it->second;
}

bool http_response::has_header(const std::string& name) const {
  return headers.count(lower(name)) != 0;
}

// -- http_client --------------------------------------------------------------------------------

struct http_client::impl {
  impl(std::string h, std::uint16_t p, ms t) : host(std::move(h)), port(p), timeout(t) {}

  std::string host;
  std::uint16_t port;
  ms timeout;
  net::io_context ioc;
  tcp::socket socket{ioc};
  net::steady_timer timer{ioc};
  beast::flat_buffer buffer;
  bool closed_by_peer = false;
  int opened = 0;

  /// Runs one asynchronous operation to completion, cancelling it after `t`. `initiate` gets a
  /// completion handler taking (error_code, std::size_t). A timed-out operation answers
  /// beast::error::timeout and leaves the socket open.
  template <class Initiate>
  std::pair<error_code, std::size_t> run(ms t, Initiate&& initiate) {
    bool done = false;
    bool timed_out = false;
    error_code result;
    std::size_t bytes = 0;
    timer.expires_after(t);
    timer.async_wait([&](const error_code& ec) {
      if (!ec && !done) {
        timed_out = true;
        error_code ignored;
        socket.cancel(ignored);
      }
    });
    initiate([&](const error_code& ec, std::size_t n) {
      done = true;
      result = ec;
      bytes = n;
      timer.cancel();
    });
    ioc.restart();
    ioc.run();
    if (timed_out && result == net::error::operation_aborted)
      result = beast::error::timeout;
    return {result, bytes};
  }

  void connect() {
    if (socket.is_open())
      return;
    buffer.consume(buffer.size());
    closed_by_peer = false;
    error_code ec;
    tcp::resolver resolver{ioc};
    auto endpoints = resolver.resolve(host, std::to_string(port), ec);
    if (ec)
      throw std::runtime_error("cannot resolve " + host + ": " + ec.message());
    error_code last = net::error::host_not_found;
    for (const auto& entry : endpoints) {
      socket = tcp::socket{ioc};
      auto ep = entry.endpoint();
      auto [cec, n] = run(timeout, [&](auto handler) {
        socket.async_connect(ep, [handler](const error_code& e) mutable { handler(e, 0); });
      });
      (void) n;
      if (!cec) {
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        ++opened;
        return;
      }
      last = cec;
      error_code ignored;
      socket.close(ignored);
    }
    throw std::runtime_error("cannot connect to " + host + ":" + std::to_string(port) + ": "
                             + last.message());
  }

  void close() {
    error_code ignored;
    if (socket.is_open()) {
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
    }
    buffer.consume(buffer.size());
  }

  error_code write(const std::string& bytes) {
    auto [ec, n] = run(
      timeout, [&](auto handler) { net::async_write(socket, net::buffer(bytes), handler); });
    (void) n;
    return ec;
  }

  /// Reads one response into `out`; returns the error and whether any byte of it arrived.
  error_code read(http_response& out, bool head, bool& got_some) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(std::uint64_t{256} * 1024 * 1024);
    parser.header_limit(1024 * 1024);
    parser.skip(head);
    auto [ec, n] = run(timeout,
                       [&](auto handler) { bhttp::async_read(socket, buffer, parser, handler); });
    (void) n;
    got_some = parser.got_some();
    if (ec) {
      if (is_closed_error(ec))
        closed_by_peer = true;
      return ec;
    }
    auto& msg = parser.get();
    out.status = static_cast<int>(msg.result_int());
    out.headers.clear();
    for (const auto& field : msg) {
      auto name = lower(std::string{field.name_string()});
      std::string value{field.value()};
      auto [it, inserted] = out.headers.emplace(name, value);
      if (!inserted)
        it->second += ", " + value;
    }
    out.body = std::move(msg.body());
    if (!msg.keep_alive())
      close();
    return {};
  }

  [[noreturn]] void fail(const std::string& what, const error_code& ec) {
    close();
    throw std::runtime_error(what + " (" + host + ":" + std::to_string(port)
                             + "): " + ec.message());
  }
};

http_client::http_client(std::string host, std::uint16_t port, ms timeout)
  : impl_(std::make_unique<impl>(std::move(host), port, timeout)) {}

http_client::~http_client() {
  impl_->close();
}

void http_client::connect() {
  impl_->connect();
}

void http_client::close() {
  impl_->close();
}

bool http_client::is_open() const {
  return impl_->socket.is_open();
}

int http_client::connections_opened() const {
  return impl_->opened;
}

bool http_client::peer_closed() const {
  return impl_->closed_by_peer;
}

void http_client::set_timeout(ms timeout) {
  impl_->timeout = timeout;
}

http_response http_client::request(const std::string& method, const std::string& target,
                                   const std::string& body, const header_map& headers) {
  bhttp::request<bhttp::string_body> req;
  req.version(11);
  req.method_string(method);
  req.target(target);
  req.set(bhttp::field::host, impl_->host + ":" + std::to_string(impl_->port));
  bool has_content_type = false;
  for (const auto& [name, value] : headers) {
    if (lower(name) == "content-type") {
      has_content_type = true;
      if (value.empty())
        continue;
    }
    req.set(name, value);
  }
  if (!body.empty() && !has_content_type)
    req.set(bhttp::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  std::string wire;
  {
    std::ostringstream os;
    os << req;
    wire = os.str();
  }
  const bool head = method == "HEAD";

  for (int attempt = 0;; ++attempt) {
    const bool reused = impl_->socket.is_open();
    impl_->connect();
    auto wec = impl_->write(wire);
    if (wec == beast::error::timeout)
      impl_->fail("writing " + method + " " + target + " timed out", wec);
    // A failed write may still leave an answer to read (e.g. a 413 sent before the server
    // stopped reading): read whatever is there.
    http_response res;
    bool got_some = false;
    auto rec = impl_->read(res, head, got_some);
    if (!rec)
      return res;
    if (reused && attempt == 0 && !got_some
        && (is_closed_error(rec) || (wec && is_closed_error(wec)))) {
      impl_->close(); // a kept-alive connection the server had closed: once more, afresh
      continue;
    }
    impl_->fail("no answer to " + method + " " + target
                  + (wec ? " (write failed: " + wec.message() + ")" : std::string{}),
                rec);
  }
}

void http_client::send_raw(const std::string& bytes) {
  impl_->connect();
  auto ec = impl_->write(bytes);
  if (ec) {
    if (is_closed_error(ec))
      impl_->closed_by_peer = true;
    throw std::system_error(ec, "send_raw");
  }
}

bool http_client::try_send_raw(const std::string& bytes) {
  try {
    send_raw(bytes);
    return true;
  } catch (const std::system_error&) {
    return false;
  }
}

std::string http_client::read_raw_until_close_or(ms timeout) {
  auto& d = *impl_;
  std::string out = beast::buffers_to_string(d.buffer.data());
  d.buffer.consume(d.buffer.size());
  d.closed_by_peer = false;
  if (!d.socket.is_open()) {
    d.closed_by_peer = true;
    return out;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char chunk[8192];
  for (;;) {
    auto left = std::chrono::duration_cast<ms>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      break;
    auto [ec, n] = d.run(
      left, [&](auto handler) { d.socket.async_read_some(net::buffer(chunk), handler); });
    out.append(chunk, n);
    if (ec == beast::error::timeout)
      break;
    if (ec) {
      d.closed_by_peer = true;
      d.close();
      break;
    }
  }
  return out;
}

http_response http_client::read_response() {
  if (!impl_->socket.is_open())
    throw std::runtime_error("read_response: not connected");
  http_response res;
  bool got_some = false;
  if (auto ec = impl_->read(res, false, got_some))
    impl_->fail("reading a response", ec);
  return res;
}

http_response http_request(const std::string& host, std::uint16_t port, const std::string& method,
                           const std::string& target, const std::string& body,
                           const header_map& headers, std::chrono::milliseconds timeout) {
  http_client client{host, port, timeout};
  auto h = headers;
  h.emplace("Connection", "close");
  return client.request(method, target, body, h);
}

bool can_connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout) {
  try {
    http_client client{host, port, timeout};
    client.connect();
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

} // namespace emporium::test
