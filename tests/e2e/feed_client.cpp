#include "e2e/feed_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>

namespace emporium::test {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using steady = std::chrono::steady_clock;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

} // namespace

// -- ws_client ------------------------------------------------------------------------------------

struct ws_client::impl {
  net::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer buffer;
  std::deque<std::string> received;
  bool reading = false;
  bool ended = false;
  int code = 0;

  void start_read() {
    if (reading || ended)
      return;
    reading = true;
    ws.async_read(buffer, [this](error_code ec, std::size_t) {
      reading = false;
      if (ec) {
        ended = true;
        if (ec == websocket::error::closed)
          code = static_cast<int>(ws.reason().code);
        return;
      }
      received.push_back(beast::buffers_to_string(buffer.data()));
      buffer.consume(buffer.size());
    });
  }

  /// Runs the io_context until a message is there or the connection ended, at most `t`. A
  /// read still pending at the deadline stays pending (cancelling would end the websocket).
  bool wait_message(ms t) {
    auto deadline = steady::now() + t;
    while (received.empty() && !ended) {
      start_read();
      auto now = steady::now();
      if (now >= deadline)
        return false;
      ioc.restart();
      ioc.run_one_for(deadline - now);
    }
    return !received.empty();
  }
};

ws_client::ws_client(const std::string& host, std::uint16_t port, const std::string& target,
                     const header_map& headers, int receive_buffer)
  : impl_(std::make_unique<impl>()) {
  auto& sock = impl_->ws.next_layer();
  sock.open(tcp::v4());
  if (receive_buffer > 0)
    sock.set_option(net::socket_base::receive_buffer_size(receive_buffer));
  sock.connect(tcp::endpoint{net::ip::make_address(host), port});
  impl_->ws.set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
    for (const auto& [k, v] : headers)
      req.set(k, v);
  }));
  websocket::response_type res;
  error_code ec;
  impl_->ws.handshake(res, host + ":" + std::to_string(port), target, ec);
  if (ec) {
    if (ec != websocket::error::upgrade_declined)
      throw std::runtime_error("websocket handshake failed: " + ec.message());
    // Beast keeps no refused answer: ask once more, as a plain request, to read it.
    header_map upgrade = headers;
    upgrade["Upgrade"] = "websocket";
    upgrade["Connection"] = "Upgrade";
    upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==";
    upgrade["Sec-WebSocket-Version"] = "13";
    sse_client again{host, port, target, upgrade};
    throw upgrade_refused(again.status(), again.body());
  }
}

ws_client::~ws_client() {
  error_code ec;
  impl_->ws.next_layer().close(ec);
}

void ws_client::send(const std::string& text) {
  impl_->ws.text(true);
  impl_->ws.write(net::buffer(text));
}

std::optional<std::string> ws_client::next_text(ms timeout) {
  if (!impl_->wait_message(timeout))
    return std::nullopt;
  auto m = std::move(impl_->received.front());
  impl_->received.pop_front();
  return m;
}

nlohmann::json ws_client::next(ms timeout) {
  auto m = next_text(timeout);
  if (!m) {
    if (impl_->ended)
      throw std::runtime_error("the server closed the websocket (code "
                               + std::to_string(impl_->code) + ")");
    throw std::runtime_error("no websocket message within " + std::to_string(timeout.count())
                             + " ms");
  }
  return nlohmann::json::parse(*m);
}

std::int64_t ws_client::subscribe(const std::string& topic, std::optional<std::int64_t> after,
                                  ms timeout) {
  nlohmann::json cmd{{"subscribe", topic}};
  if (after)
    cmd["after"] = *after;
  send(cmd);
  auto ack = next(timeout);
  if (ack.value("type", "") != "subscribed" || ack.value("topic", "") != topic)
    throw std::runtime_error("subscribing to " + topic + " answered " + ack.dump());
  return ack.at("seq").get<std::int64_t>();
}

int ws_client::wait_close(ms timeout, std::vector<std::string>* seen) {
  auto deadline = steady::now() + timeout;
  while (!impl_->ended) {
    auto now = steady::now();
    if (now >= deadline)
      return -1;
    impl_->wait_message(std::chrono::duration_cast<ms>(deadline - now));
    while (!impl_->received.empty()) {
      if (seen)
        seen->push_back(std::move(impl_->received.front()));
      impl_->received.pop_front();
    }
  }
  return impl_->code;
}

void ws_client::close() {
  if (impl_->ended)
    return;
  error_code ec;
  impl_->ws.close(websocket::close_code::normal, ec);
  impl_->ended = true;
}

bool ws_client::closed() const {
  return impl_->ended;
}

int ws_client::close_code() const {
  return impl_->code;
}

// -- sse_client -----------------------------------------------------------------------------------

struct sse_client::impl {
  int fd = -1;
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  std::string pending; ///< stream bytes not yet parsed into blocks
  std::string all;     ///< every stream byte
  bool ended = false;

  ~impl() {
    if (fd >= 0)
      ::close(fd);
  }

  /// Reads what arrives within `t` into `pending` and `all`; false on timeout or end.
  bool read_some(ms t) {
    if (ended)
      return false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::max<ms::rep>(0, t.count())));
    if (r <= 0)
      return false;
    char buf[16384];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      ended = true;
      return false;
    }
    pending.append(buf, static_cast<std::size_t>(n));
    return true;
  }
};

sse_client::sse_client(const std::string& host, std::uint16_t port, const std::string& target,
                       const header_map& headers, int receive_buffer, ms timeout)
  : impl_(std::make_unique<impl>()) {
  auto& s = *impl_;
  s.fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s.fd < 0)
    throw std::runtime_error("socket: " + std::string{std::strerror(errno)});
  if (receive_buffer > 0)
    ::setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("connect: " + std::string{std::strerror(errno)});
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port)
                    + "\r\nAccept: text/event-stream\r\n";
  for (const auto& [k, v] : headers)
    req += k + ": " + v + "\r\n";
  req += "\r\n";
  if (::send(s.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    throw std::runtime_error("send: " + std::string{std::strerror(errno)});
  auto deadline = steady::now() + timeout;
  std::size_t end = std::string::npos;
  while ((end = s.pending.find("\r\n\r\n")) == std::string::npos) {
    auto left = std::chrono::duration_cast<ms>(deadline - steady::now());
    if (left.count() <= 0 || (!s.read_some(left) && s.ended))
      throw std::runtime_error("no answer header; got: " + s.pending.substr(0, 300));
  }
  auto head = s.pending.substr(0, end);
  s.pending.erase(0, end + 4);
  auto line_end = head.find("\r\n");
  auto status_line = head.substr(0, line_end);
  auto sp = status_line.find(' ');
  s.status = std::stoi(status_line.substr(sp + 1, 3));
  std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    auto next = head.find("\r\n", pos);
    auto line = head.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ')
        value.erase(0, 1);
      s.headers[lower(line.substr(0, colon))] = value;
    }
    if (next == std::string::npos)
      break;
    pos = next + 2;
  }
  if (s.status != 200) {
    // An ordinary answer: its body by Content-Length.
    std::size_t length = 0;
    auto it = s.headers.find("content-length");
    if (it != s.headers.end())
      length = std::stoul(it->second);
    while (s.pending.size() < length) {
      auto left = std::chrono::duration_cast<ms>(deadline - steady::now());
      if (left.count() <= 0 || (!s.read_some(left) && s.ended))
        break;
    }
    s.body = s.pending.substr(0, length);
    s.pending.clear();
    return;
  }
  s.all = s.pending;
}

sse_client::~sse_client() = default;

int sse_client::status() const {
  return impl_->status;
}

std::string sse_client::header(const std::string& name) const {
  auto it = impl_->headers.find(lower(name));
  return it == impl_->headers.end() ? std::string{} : it->second;
}

const std::string& sse_client::body() const {
  return impl_->body;
}

const std::string& sse_client::received() const {
  return impl_->all;
}

std::optional<sse_event> sse_client::next_block(ms timeout) {
  auto& s = *impl_;
  auto deadline = steady::now() + timeout;
  std::size_t end;
  while ((end = s.pending.find("\n\n")) == std::string::npos) {
    auto left = std::chrono::duration_cast<ms>(deadline - steady::now());
    if (left.count() <= 0)
      return std::nullopt;
    auto before = s.pending.size();
    if (!s.read_some(left) && s.ended)
      return std::nullopt;
    s.all.append(s.pending, before, std::string::npos);
  }
  sse_event e;
  e.raw = s.pending.substr(0, end + 2);
  auto block = s.pending.substr(0, end);
  s.pending.erase(0, end + 2);
  std::size_t pos = 0;
  while (pos <= block.size()) {
    auto nl = block.find('\n', pos);
    auto line = block.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    if (!line.empty() && line[0] == ':') {
      e.comments.push_back(line.size() > 1 && line[1] == ' ' ? line.substr(2) : line.substr(1));
    } else {
      auto colon = line.find(':');
      auto field = line.substr(0, colon);
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ')
        value.erase(0, 1);
      if (field == "id")
        e.id = std::stoll(value);
      else if (field == "event")
        e.type = value;
      else if (field == "data")
        e.data += (e.data.empty() ? "" : "\n") + value;
      else if (field == "retry")
        e.retry = std::stoi(value);
    }
    if (nl == std::string::npos)
      break;
    pos = nl + 1;
  }
  return e;
}

sse_event sse_client::next_event(ms timeout) {
  auto deadline = steady::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<ms>(deadline - steady::now());
    auto b = next_block(left);
    if (!b)
      throw std::runtime_error(impl_->ended
                                 ? "the event stream ended"
                                 : "no event within " + std::to_string(timeout.count()) + " ms");
    if (b->id)
      return *b;
  }
}

bool sse_client::wait_end(ms timeout) {
  auto deadline = steady::now() + timeout;
  while (!impl_->ended) {
    auto left = std::chrono::duration_cast<ms>(deadline - steady::now());
    if (left.count() <= 0)
      return false;
    auto before = impl_->pending.size();
    impl_->read_some(left);
    impl_->all.append(impl_->pending, before, std::string::npos);
  }
  return true;
}

bool sse_client::ended() const {
  return impl_->ended;
}

void sse_client::close() {
  if (impl_->fd >= 0) {
    ::close(impl_->fd);
    impl_->fd = -1;
  }
  impl_->ended = true;
}

} // namespace emporium::test
