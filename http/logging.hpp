#pragma once
/// Structured logs: every line is one JSON object on stderr (spdlog), with `time` (UTC, RFC
/// 3339), `level`, `logger` and `msg`; lines written while a request is being handled on this
/// thread also carry its `request_id`. The access log writes one line per answered request.
/// Nothing here ever logs a token, a password or an Authorization header: callers pass only
/// hashes and addresses.

#include <cstddef>
#include <string>
#include <string_view>

namespace emporium::http::logging {

/// Makes the default logger and the "access" logger JSON-lines loggers on stderr at `level`
/// (trace, debug, info, warn, error, critical, off).
void setup(const std::string& level);

/// Flushes both loggers (at exit).
void flush();

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

/// Writes one access line at info level (nothing when the level is above info).
void access(const access_entry& e);

/// `s` as a JSON string literal, quotes included; invalid UTF-8 bytes become U+FFFD.
std::string json_quote(std::string_view s);

} // namespace emporium::http::logging
