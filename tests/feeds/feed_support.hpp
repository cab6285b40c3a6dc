#pragma once
/// What the feed load tests share: a WebSocket subscriber and an SSE subscriber that record
/// every message in the background (on their own thread) while the test drives a load, an order
/// load that places and cancels orders of one product from several client threads, and reads of
/// the outbox (the `events` table) to check what the subscribers got against.
///
/// Catch2 assertions are not thread-safe: the background threads only record; the checks run
/// on the test's thread.

#include "e2e/http_client.hpp"
#include "faults/fault_support.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace emporium::feed_test {

using json = nlohmann::json;
using ms = std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

/// A WebSocket client of GET /ws: every text frame it reads is kept (parsed as JSON).
class ws_subscriber {
 public:
  struct options {
    std::string token; ///< Authorization: Bearer on the upgrade request, when not empty
    int rcvbuf = 0;    ///< SO_RCVBUF set before connecting (as small as the kernel allows: 1)
    bool read = true;  ///< false: read nothing until start_reading() (a stalled subscriber)
  };
  ws_subscriber(std::string host, std::uint16_t port, options o);
  ws_subscriber(std::string host, std::uint16_t port) : ws_subscriber(host, port, options{}) {}
  ~ws_subscriber();
  ws_subscriber(const ws_subscriber&) = delete;
  ws_subscriber& operator=(const ws_subscriber&) = delete;

  /// Connects and upgrades; throws std::runtime_error (with the refusal's status and body)
  /// when the upgrade fails.
  void connect();
  /// Sends one text frame (queued: returns at once).
  void send(const json& message);
  /// {"subscribe": topic} (with "after" when given).
  void subscribe(const std::string& topic, std::optional<std::int64_t> after = std::nullopt);
  /// A subscriber made with read = false starts reading now.
  void start_reading();
  /// Closes the TCP connection at once (no close frame): a client that went away.
  void drop();

  /// Waits until `done` holds for the messages so far (or the connection ended and `done`
  /// still does not hold); returns whether it holds.
  bool wait(const std::function<bool(const std::vector<json>&)>& done, ms limit);
  /// The "subscribed" answer for `topic` (waits for it); null when none came within `limit`.
  json wait_subscribed(const std::string& topic, ms limit = ms{10'000});
  /// Waits until an event of `topic` with seq >= `seq` came.
  bool wait_seq(const std::string& topic, std::int64_t seq, ms limit);

  std::vector<json> messages() const;
  /// The events of `topic` (messages with a "seq" and "data"), in arrival order.
  std::vector<json> events(const std::string& topic) const;
  std::vector<std::int64_t> seqs(const std::string& topic) const;
  /// The highest seq of `topic` received; -1 when none.
  std::int64_t last_seq(const std::string& topic) const;
  /// The connection ended (close frame, EOF or reset).
  bool ended() const;
  /// The close frame's code when the server closed with one; 0 otherwise.
  int close_code() const;
  /// Why the connection ended, for failure messages.
  std::string end_reason() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// One event of a text/event-stream.
struct sse_event {
  std::string id;
  std::string event;
  std::string data;
};

/// A client of GET /products/{id}/events (or /orders/{id}/events): the answer's head, then every
/// event and comment of the stream in the background.
class sse_subscriber {
 public:
  sse_subscriber(std::string host, std::uint16_t port, std::string target,
                 test::header_map headers = {});
  ~sse_subscriber();
  sse_subscriber(const sse_subscriber&) = delete;
  sse_subscriber& operator=(const sse_subscriber&) = delete;

  /// Sends the request and reads the answer's head; a 200 is then read in the background. The
  /// status (a non-200 answer's body is read whole).
  int start();
  int status() const;
  std::string header(const std::string& lower_name) const;
  /// Everything received so far of the body (a non-200 answer: its whole body).
  std::string raw() const;
  std::vector<sse_event> events() const;
  std::vector<std::int64_t> ids() const;
  /// The highest id received; -1 when none.
  std::int64_t last_id() const;
  bool wait_id(std::int64_t id, ms limit);
  /// Waits until the raw body contains `text`.
  bool wait_text(const std::string& text, ms limit);
  /// Closes the TCP connection at once.
  void drop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Several client threads placing orders of one product (1 to 3 units) through `targets` (in
/// turn after a transport failure), each customer cancelling every second order it placed.
/// Records every answer's status; the order ids placed and cancelled.
class order_churn {
 public:
  order_churn(std::vector<faults::endpoint> targets, std::vector<faults::shopper> shoppers,
              std::string product_id);
  ~order_churn();
  order_churn(const order_churn&) = delete;
  order_churn& operator=(const order_churn&) = delete;

  void start();
  void stop();
  /// Orders acknowledged (201) so far.
  std::size_t placed() const { return placed_.load(); }
  std::size_t cancelled() const { return cancelled_.load(); }
  /// Status → count of every answer (0: no answer), "POST /orders 201" style keys.
  std::map<std::string, std::size_t> statuses() const;

 private:
  void run(std::size_t index);
  std::vector<faults::endpoint> targets_;
  std::vector<faults::shopper> shoppers_;
  std::string product_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> placed_{0}, cancelled_{0};
  mutable std::mutex mtx_;
  std::map<std::string, std::size_t> statuses_;
  std::vector<std::thread> threads_;
};

/// The outbox rows of `entity` (a topic's name: "product:<id>", "order:<id>"), seq → the
/// payload (jsonb as JSON), in seq order.
std::map<std::int64_t, json> outbox(pqxx::connection& conn, const std::string& entity);
/// The entity's highest seq in the outbox; 0 when it has none.
std::int64_t outbox_max_seq(pqxx::connection& conn, const std::string& entity);

/// "" when `seqs` is exactly from+1, from+2, ..., to; else what is wrong (first gap, repeat).
std::string consecutive(const std::vector<std::int64_t>& seqs, std::int64_t from, std::int64_t to);

/// GET /products/{id}'s stock; -1 when it did not answer 200.
std::int64_t stock_of(const std::string& host, std::uint16_t port, const std::string& product);

/// A number of a /metrics text (name with its labels); -1 when absent.
double metric_of(const std::string& host, std::uint16_t port, const std::string& name);

} // namespace emporium::feed_test
