#pragma once
/// Structured logs: every line is one JSON object on stderr (spdlog), with `time` (UTC, RFC
/// 3339), `level`, `logger` and `msg`; lines written while a request is being handled on this
/// thread also carry its `request_id`. The access log writes one line per answered request,
/// through a bounded queue (log_queue.hpp) written by a thread of its own: a request never
/// waits for stderr, and a line that finds the queue full is dropped and counted
/// (`emporium_log_dropped_total`).
/// Nothing here ever logs a token, a password or an Authorization header: callers pass only
/// hashes and addresses.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace emporium::http::logging {

/// Makes the default logger a JSON-lines logger on stderr at `level` (trace, debug, info, warn,
/// error, critical, off), and turns the access log on when `level` is info or below, with at
/// most `access_queue_lines` lines waiting to be written.
void setup(const std::string& level, std::size_t access_queue_lines = 16384);

/// Writes what both logs hold (at exit).
void flush();

struct queue_stats {
  std::uint64_t dropped = 0; ///< access lines dropped because the queue was full
  std::uint64_t written = 0; ///< access lines written
  std::size_t waiting = 0;   ///< access lines queued now
};
/// The access log's queue, as /metrics shows it.
queue_stats access_queue_stats();

/// While alive, log lines written by this thread carry `"request_id": id` (`id` must outlive it).
class request_scope {
 public:
  explicit request_scope(std::string_view id);
  ~request_scope();
  request_scope(const request_scope&) = delete;
  request_scope& operator=(const request_scope&) = delete;

 private:
  std::string_view previous_;
};

/// The request id of the current thread's scope, or empty.
std::string_view current_request_id();

struct access_entry {
  std::string_view request_id;
  std::string_view method;
  std::string_view route; ///< the route pattern (`/products/{id}`), never the raw path
  int status = 0;
  double duration_ms = 0;
  std::size_t bytes = 0;   ///< body bytes sent
  std::string_view client; ///< hashed token prefix or remote address
  std::string_view route_class;
  bool rate_limited_locally = false; ///< redis mode fell back to the local bucket
};

/// The fields of an access line, as JSON members without braces (exposed for tests).
std::string access_fields(const access_entry& e);

/// The whole access line (with its final newline) for `fields` (access_fields) logged at `at`,
/// as the access log's thread writes it (exposed for tests).
std::string access_line(std::chrono::system_clock::time_point at, std::string_view fields);

/// Queues one access line at info level (nothing when the level is above info). Never waits.
void access(const access_entry& e);

/// `s` as a JSON string literal, quotes included; invalid UTF-8 bytes become U+FFFD.
std::string json_quote(std::string_view s);

} // namespace emporium::http::logging
