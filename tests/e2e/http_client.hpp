#pragma once
/// A small synchronous HTTP/1.1 client for the end-to-end tests: one keep-alive connection,
/// every operation bounded by a timeout. Boost.Beast stays in http_client.cpp (compile cost).

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace emporium::test {

/// Header names as given by the caller (any case) → value. An empty value for Content-Type
/// suppresses the default `application/json` sent with a non-empty body.
using header_map = std::map<std::string, std::string>;

struct http_response {
  int status = 0;
  std::map<std::string, std::string> headers; ///< lower-case names; repeated fields joined by ", "
  std::string body;

  /// The body parsed as JSON; throws (with the body in the message) when it is not JSON.
  nlohmann::json json() const;
  /// A header's value, "" when absent; `name` in any case.
  std::string header(const std::string& name) const;
  bool has_header(const std::string& name) const;
};

class http_client {
 public:
  using ms = std::chrono::milliseconds;

  /// Connects lazily, on the first request. `timeout` bounds each connect, write and read.
  http_client(std::string host, std::uint16_t port, ms timeout = ms{10'000});
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// Sends one request on the kept-alive connection and reads its answer. Connects when not
  /// connected; when a reused connection turns out closed before any answer byte, reconnects
  /// once and sends again. Throws std::runtime_error on timeout or connection failure.
  http_response request(const std::string& method, const std::string& target,
                        const std::string& body = "", const header_map& headers = {});

  http_response get(const std::string& target, const header_map& headers = {}) {
    return request("GET", target, "", headers);
  }

  /// Writes bytes as they are (connecting first if needed). Throws std::system_error when the
  /// write fails (e.g. the peer has closed: broken pipe, connection reset).
  void send_raw(const std::string& bytes);

  /// Like send_raw, but reports a failed write as `false` instead of throwing.
  bool try_send_raw(const std::string& bytes);

  /// Reads whatever arrives until the peer closes the connection or `timeout` passes, and
  /// returns it. peer_closed() tells which of the two ended it. The connection stays usable
  /// after a timeout.
  std::string read_raw_until_close_or(ms timeout);

  /// Reads one HTTP response from the connection (after send_raw, e.g. pipelined requests).
  http_response read_response();

  /// True when the last read saw the peer close the connection (EOF or reset).
  bool peer_closed() const;

  /// Connects now (no-op when connected). Throws on failure.
  void connect();
  void close();
  bool is_open() const;

  /// How many TCP connections this client has opened so far.
  int connections_opened() const;

  void set_timeout(ms timeout);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// One request on a fresh connection (`Connection: close`), then closed.
http_response http_request(const std::string& host, std::uint16_t port, const std::string& method,
                           const std::string& target, const std::string& body = "",
                           const header_map& headers = {},
                           std::chrono::milliseconds timeout = std::chrono::milliseconds{10'000});

/// True when a TCP connection to host:port is accepted within `timeout`.
bool can_connect(const std::string& host, std::uint16_t port,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds{1'000});

} // namespace emporium::test
