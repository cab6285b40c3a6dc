#pragma once
/// The real `emporium serve` as a child process of the test: started on a free port against the
/// test PostgreSQL and Redis (EMPORIUM_TEST_PG_URL, EMPORIUM_TEST_REDIS_URL), stopped by SIGTERM
/// or SIGKILL, and never left behind: the destructor stops it with SIGTERM (so that it exits by
/// itself, and under the sanitizers is leak-checked at its exit), with SIGKILL only when it has
/// not exited 30 s later, and the child is also asked to die with the test process
/// (PR_SET_PDEATHSIG). Only a test about a crash kills a server (kill9).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace emporium::test {

/// The admin key every test server runs with (EMPORIUM_ADMIN_KEY).
inline constexpr const char* test_admin_key = "e2e-test-admin-key-7f3a9c2d41b8";

/// `Authorization` value carrying test_admin_key.
inline std::string admin_bearer() {
  return std::string{"Bearer "} + test_admin_key;
}

/// Environment variables for the server, name → value (they win over the defaults below).
using env_map = std::map<std::string, std::string>;

/// The open-files limit (RLIMIT_NOFILE) the server is started with; 0 keeps the test's own.
struct open_files_limit {
  std::uint64_t soft = 0;
  std::uint64_t hard = 0;
};

class server_process {
 public:
  /// Starts the server and waits until GET /healthz answers 200 (30 s at most; the test fails
  /// with the tail of the server's log otherwise). The child's environment is this process's,
  /// minus every EMPORIUM_* variable that is not EMPORIUM_TEST_*, plus EMPORIUM_PG_URL,
  /// EMPORIUM_REDIS_URL, EMPORIUM_HTTP_PORT, EMPORIUM_ADMIN_KEY, a rate limit high enough not
  /// to interfere, and `extra_env`.
  explicit server_process(env_map extra_env = {});
  /// As above, started with the open-files limit `files` (set in the child before exec).
  server_process(env_map extra_env, open_files_limit files);
  ~server_process();
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  /// Starts the server when it is not running, on the port it had before (a new free port the
  /// first time, or when that one was taken meanwhile).
  void start();

  std::uint16_t port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  pid_t pid() const { return pid_; }
  /// The server's resident memory (VmRSS) in KiB; -1 when it cannot be read.
  long rss_kib() const;

  /// True while the child has not exited (reaps it when it has).
  bool running();

  /// Sends SIGTERM and waits for the exit; after `grace` it sends SIGKILL and fails the test.
  /// Returns the exit status: the exit code, or 128 + signal number when killed by a signal.
  int stop_term(std::chrono::seconds grace = std::chrono::seconds{20});

  /// SIGKILL and reap.
  void kill9();

  /// stop_term() then start() on the same port; returns the stop's exit status.
  int restart();

  /// Sends `sig` to the server, nothing else (a SIGTERM sent here is not sent again by the
  /// destructor: a second one would cut the drain short).
  void send_signal(int sig);

  /// Waits up to `limit` for the exit; its status as for stop_term(), or -1 while still running.
  int wait_exit(std::chrono::milliseconds limit);

  /// The server's stdout and stderr (all starts appended). Removed by the destructor unless
  /// EMPORIUM_TEST_KEEP_LOGS is set.
  const std::string& log_path() const { return log_path_; }
  std::string log_tail(std::size_t bytes = 4000) const;

 private:
  bool spawn(std::string& why);
  bool reap(bool block);

  env_map extra_env_;
  open_files_limit files_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
  int status_ = -1;
  bool term_sent_ = false; ///< SIGTERM sent to the running child
  /// How long the destructor waits for the exit after SIGTERM (the drain takes at most
  /// http.drain_timeout_ms, 10 s by default; slower under the sanitizers).
  static constexpr int destructor_grace_s = 30;
  std::string log_path_;
};

/// The server shared by every test case of this process that needs no special settings:
/// started on first use, stopped (SIGTERM) at exit. Tests may restart it (its port stays the
/// same).
server_process& shared_server();

/// A free TCP port on 127.0.0.1 (bound to port 0, read back, closed).
std::uint16_t pick_free_port();

} // namespace emporium::test
