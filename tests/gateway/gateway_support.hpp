#pragma once
/// What the gateway's end-to-end tests share: a redis-server of their own (to stop and start),
/// reading /metrics samples, reading the server's JSON log lines.

#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace emporium::test {

/// A redis-server child process on a free loopback port, without persistence; killed by the
/// destructor and with the test process (PR_SET_PDEATHSIG).
class redis_process {
 public:
  redis_process();
  ~redis_process();
  redis_process(const redis_process&) = delete;
  redis_process& operator=(const redis_process&) = delete;

  /// Starts it (again, on the same port) and waits until it answers PING.
  void start();
  /// SIGKILL and reap: an outage as abrupt as a crash.
  void kill();

  std::uint16_t port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  /// True when `key` exists (false also when Redis does not answer).
  bool exists(const std::string& key) const;

 private:
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

/// True when the Redis at url answers PING within a second.
bool redis_ping(std::uint16_t port);

/// The value of one sample of the exposition, `name{labels}` exactly as rendered, or nothing.
std::optional<double> metric_value(const std::string& exposition, const std::string& sample);

/// GET /metrics on a fresh connection.
std::string scrape(const server_process& srv);

/// The server's log lines that parse as JSON objects.
std::vector<nlohmann::json> json_log_lines(const server_process& srv);

/// A bearer token unique to this call, signed as the server signs the tokens it issues. It
/// has no session: the gateway verifies it, finds nothing, and charges its address.
std::string fresh_token();

/// An IPv4 address unique to this call (198.18.0.0/15, the benchmarking range), for
/// X-Forwarded-For through a server that trusts 127.0.0.1: a client with buckets of its own.
std::string fresh_address();

/// A customer signed up and logged in `sessions` times over `c` (one token per session).
struct customer_sessions {
  std::string id;
  std::string email;
  std::string password;
  std::vector<std::string> tokens;
};
customer_sessions new_customer(http_client& c, int sessions = 1);

/// `Authorization: Bearer <token>`.
header_map bearer(const std::string& token);

/// A made-up bearer token unique to this call: not signed, so charged to its address.
std::string unsigned_token();

/// Runs `cmd` with `input` on its standard input; returns its exit status and fills `output`
/// with what it printed (stdout and stderr).
int run_with_input(const std::string& cmd, const std::string& input, std::string& output);

} // namespace emporium::test
