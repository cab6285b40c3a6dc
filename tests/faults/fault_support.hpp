#pragma once
/// What the fault tests share: control of the throwaway services scripts/test.sh started (stop,
/// freeze and restart Redis and PostgreSQL, always restored at the end of a test), a load
/// generator of several client threads that records every answer, and the summary line each
/// fault prints for the closing note.
///
/// These tests break the services every other test uses: they run with RESOURCE_LOCK services
/// (never concurrently with another test), and `service_guard` brings everything back even when
/// a test fails half-way.

#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace emporium::faults {

using steady = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;
using json = nlohmann::json;

/// Milliseconds between two instants, as a double.
double millis(steady::time_point from, steady::time_point to);

// -- commands -----------------------------------------------------------------------------------

struct command_result {
  int status = -1;    ///< exit code, 128 + signal when killed, -1 when it could not run
  std::string output; ///< stdout and stderr together
};

/// Runs `argv` (no shell) with none of this process's descriptors but 0-2, its output captured;
/// killed after `limit`. Daemons it starts (postmaster, redis-server) keep none of our sockets.
command_result run_command(const std::vector<std::string>& argv,
                           std::chrono::seconds limit = std::chrono::seconds{90});

// -- services -----------------------------------------------------------------------------------

/// The PostgreSQL and Redis of scripts/test.sh (EMPORIUM_TEST_PG_CTL, _PG_DATA, _PG_OPTS,
/// _REDIS_PORT, _REDIS_DIR); constructing it fails the test when they are not given.
class services {
 public:
  services();

  // Redis
  /// `redis-cli -p PORT shutdown nosave`, then waits until the process is gone.
  void stop_redis();
  /// Writes Redis's data to its snapshot (SAVE) and stops it: the next start_redis() comes back
  /// with everything it held, as a Redis with persistence would after a restart.
  void stop_redis_keeping_data();
  /// Starts it again exactly as scripts/test.sh did: lib.sh's emporium_redis_start DIR PORT.
  /// A snapshot left by stop_redis_keeping_data() is loaded by this start only, then removed.
  void start_redis();
  /// SIGSTOP / SIGCONT: a Redis that accepts connections but never answers (a partition),
  /// and keeps the data it had.
  void freeze_redis();
  void thaw_redis();
  bool redis_answers();
  /// redis-cli -p PORT ARGS... (output without the trailing newline).
  std::string redis_cli(const std::vector<std::string>& args);

  // PostgreSQL
  /// pg_ctl stop -m immediate: every backend killed, no shutdown checkpoint.
  void stop_postgres_immediate();
  /// pg_ctl start -w with the options of scripts/test.sh (crash recovery included).
  void start_postgres();
  bool postgres_running();

  /// Brings both back (thaw, start) when they are not running. Never throws: it runs from
  /// destructors; problems go to stderr and make the next check fail.
  void restore() noexcept;

 private:
  int redis_pid();
  std::string root_;
  std::string pg_ctl_, pg_data_, pg_opts_;
  std::string redis_port_, redis_dir_;
  bool redis_frozen_ = false;
};

/// The throwaway cluster of scripts/test.sh runs with synchronous_commit=off (speed): an
/// immediate stop then loses the last commits, acknowledged or not. Tests about what Emporium
/// acknowledges across a PostgreSQL stop make the database commit durably while they run (a
/// database setting overrides the server's; fsync=off is harmless here: a killed postmaster is
/// not a lost OS). Declare it before the service_guard, so it is reset after PostgreSQL is back.
class durable_commits {
 public:
  durable_commits();
  ~durable_commits();
  durable_commits(const durable_commits&) = delete;
  durable_commits& operator=(const durable_commits&) = delete;

 private:
  std::string db_;
};

/// Restores the services when the test leaves its scope, however it leaves.
class service_guard {
 public:
  explicit service_guard(services& s) : s_(s) {}
  ~service_guard() { s_.restore(); }
  service_guard(const service_guard&) = delete;
  service_guard& operator=(const service_guard&) = delete;

 private:
  services& s_;
};

// -- load -----------------------------------------------------------------------------------------

/// A server the load generator sends to.
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
};

/// One answer seen by the load generator.
struct sample {
  std::string op;
  std::uint16_t port = 0; ///< the server asked
  steady::time_point sent;
  double ms = 0;             ///< until the answer (or the transport failure)
  int status = 0;            ///< 0: no answer (refused, reset, timed out)
  bool expected = false;     ///< status among the op's accepted ones
  bool problem_json = false; ///< Content-Type application/problem+json
  bool retry_after = false;  ///< has a Retry-After header
  std::string detail;        ///< transport error, or the start of an unexpected body
};

/// What one operation of the load does: send a request with the thread's client and randomness,
/// and say which statuses are acceptable. `send` may throw (transport failure); it may also
/// return a status of its own after several requests (e.g. a cart checkout).
struct operation {
  std::string name;
  int weight = 1;
  std::function<test::http_response(test::http_client&, std::mt19937&)> send;
  std::set<int> accepted;
};

/// `threads` clients, each in a loop picking operations by weight, until stop() (or at most
/// `max_duration`, or `max_requests` in all). Every answer is recorded; transport failures too
/// (then the client reconnects after a short pause).
class load_generator {
 public:
  load_generator(const test::server_process& srv, std::vector<operation> ops, int threads,
                 ms client_timeout = ms{15'000},
                 std::chrono::seconds max_duration = std::chrono::seconds{120},
                 std::size_t max_requests = 200'000);
  /// Clients spread over several servers: client i starts on targets[i % size], and after a
  /// transport failure reconnects to the next target (as behind a load balancer that drops a
  /// dead server).
  load_generator(std::vector<endpoint> targets, std::vector<operation> ops, int threads,
                 ms client_timeout = ms{15'000},
                 std::chrono::seconds max_duration = std::chrono::seconds{120},
                 std::size_t max_requests = 200'000);
  ~load_generator();
  load_generator(const load_generator&) = delete;
  load_generator& operator=(const load_generator&) = delete;

  void start();
  void stop();
  std::size_t count() const { return sent_.load(); }
  /// Every sample so far, in no particular order (after stop(): all of them).
  std::vector<sample> samples() const;

 private:
  void run(int index);
  std::vector<endpoint> targets_;
  std::vector<operation> ops_;
  int threads_;
  ms client_timeout_;
  std::chrono::seconds max_duration_;
  std::size_t max_requests_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> sent_{0};
  mutable std::mutex mtx_;
  std::vector<sample> samples_;
  std::vector<std::thread> workers_;
};

/// Samples sent in [from, to) that `keep` accepts (all when empty), summed up.
struct window {
  std::size_t requests = 0;
  std::map<int, std::size_t> by_status; ///< 0: no answer
  double longest_ms = 0;
  std::string longest_op;
  std::size_t unexpected = 0;
  std::vector<std::string> unexpected_examples; ///< a few, for the failure message
  /// 503 answers without problem+json or without Retry-After.
  std::size_t bad_503 = 0;
};
window summarize(const std::vector<sample>& samples, steady::time_point from, steady::time_point to,
                 const std::function<bool(const sample&)>& keep = {});

std::string format_statuses(const std::map<int, std::size_t>& by_status);

/// One line per fault for the closing note: printed on stdout, given to Catch as a WARN, and
/// appended to $EMPORIUM_TEST_FAULTS_SUMMARY when set (.ci/run prints that file at the end).
void report_fault(const std::string& fault, const window& during, double recovery_ms,
                  bool invariants_ok, const std::string& invariants);

// -- HTTP helpers ---------------------------------------------------------------------------------

test::header_map admin();
/// A number of /metrics (`name` may carry labels: name{label="v"}); -1 when absent.
double metric(const std::string& metrics_text, const std::string& name);
/// GET /metrics on a fresh connection.
std::string scrape(const test::server_process& srv);

/// A product (admin), its id; fails the test on anything but 201.
std::string create_product(test::http_client& c, std::int64_t stock,
                           std::int64_t price_cents = 1'000,
                           const std::string& name = "Fault widget");

struct shopper {
  std::string id;
  std::string token;
  test::header_map auth() const { return {{"Authorization", "Bearer " + token}}; }
};
/// A new customer, logged in; fails the test otherwise.
shopper new_shopper(test::http_client& c);

json address();
json order_body(const std::vector<std::pair<std::string, int>>& lines);

/// Every order of `customers` in PostgreSQL: id → status.
std::map<std::string, std::string> orders_of(pqxx::connection& conn,
                                             const std::vector<shopper>& customers);

/// Servers for fault tests: the login rate limit out of the way, like the commerce e2e tests.
test::env_map fault_env(test::env_map extra = {});

} // namespace emporium::faults
