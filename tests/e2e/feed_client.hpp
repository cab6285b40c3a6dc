#pragma once
/// Small blocking clients of the real-time feeds for the end-to-end tests (and the load and page
/// tests): a WebSocket client of GET /ws (Beast's websocket, in feed_client.cpp) and an event
/// stream client of GET /products/{id}/events and /orders/{id}/events (a plain socket). Every
/// wait is bounded by a timeout.

#include "e2e/http_client.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace emporium::test {

/// A WebSocket upgrade the server answered with something else than 101.
struct upgrade_refused : std::runtime_error {
  upgrade_refused(int s, std::string b)
    : std::runtime_error("the upgrade was refused with " + std::to_string(s) + ": " + b),
      status(s),
      body(std::move(b)) {}
  int status;
  std::string body; ///< problem+json
};

class ws_client {
 public:
  using ms = std::chrono::milliseconds;

  /// Connects and completes the handshake on `target` (e.g. "/ws", "/ws?access_token=..."),
  /// sending `headers` with the upgrade request. `receive_buffer` > 0 sets SO_RCVBUF before
  /// connecting (a client that stops reading then stalls the server soon). Throws
  /// upgrade_refused when the server answers the upgrade with an HTTP error.
  ws_client(const std::string& host, std::uint16_t port, const std::string& target = "/ws",
            const header_map& headers = {}, int receive_buffer = 0);
  ~ws_client();
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

  /// Sends one text frame.
  void send(const std::string& text);
  void send(const nlohmann::json& j) { send(j.dump()); }

  /// The next text message, parsed; throws std::runtime_error on timeout, or when the server
  /// closed (with its close code in the message).
  nlohmann::json next(ms timeout = ms{10'000});
  /// The next text message as sent; none on timeout or once closed.
  std::optional<std::string> next_text(ms timeout = ms{10'000});

  /// {"subscribe":topic[,"after":N]}, then the next message, which must be `subscribed` for
  /// it (else throws, with that message): returns its seq.
  std::int64_t subscribe(const std::string& topic, std::optional<std::int64_t> after = {},
                         ms timeout = ms{10'000});

  /// Reads until the server closes (messages meanwhile go to `seen`, when given) and returns
  /// the close code: 0 when the connection ended without a close frame; -1 on timeout.
  int wait_close(ms timeout = ms{10'000}, std::vector<std::string>* seen = nullptr);

  /// Closes with 1000 (no-op when closed).
  void close();
  bool closed() const;
  /// The close code the server sent (0 when none yet, or the connection just ended).
  int close_code() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// One event-stream block, parsed.
struct sse_event {
  std::optional<std::int64_t> id;
  std::string type; ///< "event:"
  std::string data; ///< "data:" lines joined by '\n'
  std::vector<std::string> comments;
  std::optional<int> retry;
  std::string raw; ///< the block as received, with its blank line
};

class sse_client {
 public:
  using ms = std::chrono::milliseconds;

  /// Connects, sends GET `target` with `headers` and reads the answer's header (and, for an
  /// answer that is not a stream, its body). `receive_buffer` as for ws_client.
  sse_client(const std::string& host, std::uint16_t port, const std::string& target,
             const header_map& headers = {}, int receive_buffer = 0, ms timeout = ms{10'000});
  ~sse_client();
  sse_client(const sse_client&) = delete;
  sse_client& operator=(const sse_client&) = delete;

  int status() const;
  std::string header(const std::string& name) const; ///< "" when absent; any case
  /// The body of an answer that is not a stream (problem+json).
  const std::string& body() const;

  /// The next block (comments-only blocks too); none on timeout or when the stream ended.
  std::optional<sse_event> next_block(ms timeout = ms{10'000});
  /// The next block with an `id` (an event), skipping comment blocks; throws on timeout or end.
  sse_event next_event(ms timeout = ms{10'000});
  /// Every byte of the stream received so far (the preamble first).
  const std::string& received() const;

  /// Waits until the server ends the stream (reading and dropping what arrives); false on
  /// timeout.
  bool wait_end(ms timeout = ms{10'000});
  bool ended() const;
  void close();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace emporium::test
