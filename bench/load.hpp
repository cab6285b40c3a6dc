#pragma once
/// The load engine: keep-alive HTTP/1.1 connections on Boost.Asio/Beast, one io_context per
/// thread, each connection driven by a scenario's virtual user. Closed loop (each connection
/// sends its next request when the answer came) or open loop (requests are due at fixed
/// intervals; latency counts from the moment a request was DUE, not when a free connection
/// finally sent it, so a stalled server cannot hide its tail: no coordinated omission).
///
/// Beast stays inside load.cpp: this header is cheap to include.

#include "bench/histogram.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace emporium::bench {

/// Where requests go: an http:// origin.
struct target {
  std::string host = "127.0.0.1";
  std::string port = "80";
  std::string host_header; ///< "host:port", as sent in Host
};

/// Parses http://host[:port][/...]; throws std::invalid_argument otherwise.
target parse_target(const std::string& url);

/// Failures without an HTTP answer.
enum class error_kind : int { connect = 0, timeout = 1, reset = 2, other = 3 };
constexpr std::array<const char*, 4> error_kind_names{"connect", "timeout", "reset", "other"};

struct request {
  std::string method = "GET";
  std::string target;
  std::string body;            ///< sent as application/json when not empty
  std::string bearer;          ///< Authorization: Bearer <bearer> when not empty
  std::string idempotency_key; ///< Idempotency-Key when not empty
  int op = 0;                  ///< index into the scenario's operations()
};

/// One simulated client, bound to one connection at a time. Called only from that connection's
/// thread. The engine counts every answer; `ok` decides whether it counts as success.
class user {
 public:
  virtual ~user() = default;

  /// Set-up phase (never measured): fill `out` and return true to send it; false when this
  /// user has nothing (more) to set up.
  virtual bool setup(request& /*out*/) { return false; }

  /// Measured phase: fill `out` with the next request and return true, or return false when
  /// this user is finished (closed loop: when every user is, the run ends early).
  virtual bool next(request& out) = 0;

  /// The answer to `req`. Returns whether it counts as a success (else it is an error by
  /// status). `measured` is false during set-up and warm-up.
  virtual bool on_answer(const request& req, int status, const std::string& body,
                         bool measured) = 0;

  /// `req` got no answer.
  virtual void on_failure(const request& /*req*/, error_kind /*kind*/) {}
};

class scenario {
 public:
  virtual ~scenario() = default;
  /// Names of the request kinds, indexed by request::op.
  virtual std::vector<std::string> operations() const = 0;
  /// The user driving connection `index` (0-based, stable).
  virtual std::unique_ptr<user> make_user(std::size_t index, std::uint64_t seed) = 0;
  /// Whether users have a set-up phase.
  virtual bool has_setup() const { return false; }
};

struct engine_options {
  target where;
  int connections = 64;
  int threads = 1;
  double rate = 0; ///< requests per second over all connections; 0: closed loop
  double duration_s = 10;
  double warmup_s = 0;   ///< run but not counted
  double timeout_s = 10; ///< per request (and per connect)
  std::uint64_t seed = 1;
  bool timeline = false; ///< keep run_stats::timeline
};

struct op_stats {
  histogram latency;
  std::uint64_t requests = 0; ///< answered
  std::uint64_t ok = 0;
  std::map<int, std::uint64_t> by_status; ///< answers that were not ok
  std::array<std::uint64_t, 4> by_kind{}; ///< no answer
  std::map<int, std::string> samples;     ///< the first body of each error status (diagnosis)
};

/// One second of the measured window for one request kind: the latencies of the answers that
/// came in that second, and the requests that failed in it (error statuses and no answer).
struct timeline_cell {
  histogram latency;
  std::uint64_t errors = 0;
};

struct run_stats {
  std::vector<std::string> op_names;
  std::vector<op_stats> ops;
  histogram latency;          ///< every answered request
  std::uint64_t requests = 0; ///< answered
  std::uint64_t ok = 0;
  std::map<int, std::uint64_t> by_status;
  std::array<std::uint64_t, 4> by_kind{};
  double elapsed_s = 0; ///< the measured window
  double setup_s = 0;
  std::uint64_t setup_requests = 0;
  std::uint64_t setup_failures = 0;
  /// Open loop: requests due in the window that had no answer when it closed (queued or in
  /// flight); a large number means the server could not keep up with the rate.
  std::uint64_t unfinished = 0;
  std::uint64_t backlog_peak = 0; ///< open loop: most requests waiting for a free connection
  std::uint64_t bytes_read = 0;
  /// With engine_options::timeline: (second since the window opened, op index) -> cell.
  std::map<std::pair<std::int64_t, int>, timeline_cell> timeline;
  double window_start_unix_s = 0; ///< wall-clock time the measured window opened

  std::uint64_t errors() const;
  void merge(const run_stats& other);
};

/// Hooks run on the calling thread (each may be empty).
struct run_hooks {
  std::function<void()> after_setup;  ///< after set-up, before warm-up
  std::function<void()> window_start; ///< when the measured window opens
  std::function<void()> window_end;   ///< when it closes
};

/// Runs the set-up phase (if any), then warm-up and the measured window.
run_stats run_load(const engine_options& opts, scenario& sc, const run_hooks& hooks = {});

/// A blocking single request on a fresh connection (ids paging, probes). Throws nothing:
/// `status` is 0 and `error` says why when there was no answer.
struct simple_response {
  int status = 0;
  std::string body;
  std::string error;
};
simple_response fetch(const target& where, const std::string& method, const std::string& path,
                      const std::string& body = {}, const std::string& bearer = {},
                      double timeout_s = 30);

} // namespace emporium::bench
