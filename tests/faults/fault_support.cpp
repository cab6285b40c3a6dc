#include "faults/fault_support.hpp"

#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <cstdio>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>

#ifndef EMPORIUM_SOURCE_DIR
#error "EMPORIUM_SOURCE_DIR must name the repository root (for scripts/lib.sh)"
#endif

namespace emporium::faults {

using test::env_or;
using test::http_client;
using test::http_response;

double millis(steady::time_point from, steady::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// -- commands -----------------------------------------------------------------------------------

command_result run_command(const std::vector<std::string>& argv, std::chrono::seconds limit) {
  command_result out;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    out.output = std::string{"pipe: "} + std::strerror(errno);
    return out;
  }
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args)
    cargs.push_back(a.data());
  cargs.push_back(nullptr);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  pid_t child = ::fork();
  if (child < 0) {
    out.output = std::string{"fork: "} + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    ::close(null_fd);
    return out;
  }
  if (child == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGCHLD})
      ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(null_fd, 0);
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    // Daemons started from here (postmaster, redis-server) must not keep the test's sockets.
    if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
      for (int fd = 3; fd < 4096; ++fd)
        ::close(fd);
    ::execvp(cargs[0], cargs.data());
    const char msg[] = "faults: execvp failed\n";
    (void) !::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(fds[1]);
  ::close(null_fd);

  auto deadline = steady::now() + limit;
  bool exited = false, killed = false;
  int raw = 0;
  char buf[4096];
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    if (r > 0) {
      auto n = ::read(fds[0], buf, sizeof buf);
      if (n > 0) {
        out.output.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) {
        if (exited)
          break;
        std::this_thread::sleep_for(ms{10}); // EOF before the exit: do not spin on it
      }
    }
    if (!exited) {
      pid_t w = ::waitpid(child, &raw, WNOHANG);
      if (w == child) {
        exited = true;
        // A daemon it started may hold the pipe: drain what is there, then stop reading.
        ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
        for (;;) {
          auto n = ::read(fds[0], buf, sizeof buf);
          if (n <= 0)
            break;
          out.output.append(buf, static_cast<std::size_t>(n));
        }
        break;
      }
      if (steady::now() > deadline && !killed) {
        ::kill(child, SIGKILL);
        killed = true;
        out.output += "\n[faults: killed after " + std::to_string(limit.count()) + " s]";
      }
    }
  }
  ::close(fds[0]);
  if (WIFEXITED(raw))
    out.status = WEXITSTATUS(raw);
  else if (WIFSIGNALED(raw))
    out.status = 128 + WTERMSIG(raw);
  return out;
}

namespace {

std::string required_env(const char* name) {
  auto v = env_or(name, "");
  if (v.empty())
    throw std::runtime_error(std::string{name}
                             + " is not set: the fault tests run through scripts/test.sh, which "
                               "starts throwaway services they may break");
  return v;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
    s.pop_back();
  return s;
}

void check(const command_result& r, const std::string& what) {
  if (r.status != 0)
    throw std::runtime_error(what + " failed (status " + std::to_string(r.status)
                             + "): " + r.output);
}

} // namespace

// -- services -----------------------------------------------------------------------------------

services::services()
  : root_(EMPORIUM_SOURCE_DIR),
    pg_ctl_(required_env("EMPORIUM_TEST_PG_CTL")),
    pg_data_(required_env("EMPORIUM_TEST_PG_DATA")),
    pg_opts_(required_env("EMPORIUM_TEST_PG_OPTS")),
    redis_port_(required_env("EMPORIUM_TEST_REDIS_PORT")),
    redis_dir_(required_env("EMPORIUM_TEST_REDIS_DIR")) {}

int services::redis_pid() {
  std::ifstream in{redis_dir_ + "/redis.pid"};
  int pid = 0;
  if (in >> pid && pid > 0 && ::kill(pid, 0) == 0)
    return pid;
  return 0;
}

std::string services::redis_cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"timeout", "5", "redis-cli", "-h", "127.0.0.1", "-p", redis_port_};
  argv.insert(argv.end(), args.begin(), args.end());
  return trim(run_command(argv, std::chrono::seconds{10}).output);
}

bool services::redis_answers() {
  return redis_cli({"ping"}) == "PONG";
}

void services::stop_redis() {
  int pid = redis_pid();
  if (pid == 0)
    throw std::runtime_error("Redis is not running (no live pid in " + redis_dir_ + ")");
  redis_cli({"shutdown", "nosave"});
  auto deadline = steady::now() + std::chrono::seconds{15};
  while (::kill(pid, 0) == 0) {
    if (steady::now() > deadline)
      throw std::runtime_error("Redis (pid " + std::to_string(pid) + ") did not shut down");
    std::this_thread::sleep_for(ms{20});
  }
}

void services::stop_redis_keeping_data() {
  auto saved = redis_cli({"SAVE"});
  if (saved != "OK")
    throw std::runtime_error("Redis SAVE answered '" + saved + "'");
  stop_redis();
}

void services::start_redis() {
  auto r = run_command({"bash", "-c",
                        "source \"$0/scripts/lib.sh\" && emporium_redis_start \"$1\" \"$2\"", root_,
                        redis_dir_, redis_port_});
  check(r, "emporium_redis_start " + redis_dir_ + " " + redis_port_);
  std::remove((redis_dir_ + "/dump.rdb").c_str()); // loaded by this start, not by later ones
}

void services::freeze_redis() {
  int pid = redis_pid();
  if (pid == 0)
    throw std::runtime_error("Redis is not running");
  if (::kill(pid, SIGSTOP) != 0)
    throw std::runtime_error(std::string{"SIGSTOP to Redis: "} + std::strerror(errno));
  redis_frozen_ = true;
}

void services::thaw_redis() {
  int pid = redis_pid();
  if (pid != 0)
    ::kill(pid, SIGCONT);
  redis_frozen_ = false;
}

void services::stop_postgres_immediate() {
  check(run_command({pg_ctl_, "-D", pg_data_, "-m", "immediate", "-w", "-t", "30", "stop"}),
        "pg_ctl stop -m immediate");
}

void services::start_postgres() {
  check(run_command({pg_ctl_, "-D", pg_data_, "-w", "-t", "60", "-l", pg_data_ + "/server.log",
                     "-o", pg_opts_, "start"}),
        "pg_ctl start");
}

bool services::postgres_running() {
  return run_command({pg_ctl_, "-D", pg_data_, "status"}, std::chrono::seconds{15}).status == 0;
}

void services::restore() noexcept {
  try {
    if (redis_frozen_)
      thaw_redis();
    if (!redis_answers()) {
      std::cerr << "[faults] restoring Redis\n";
      start_redis();
    }
  } catch (const std::exception& e) {
    std::cerr << "[faults] could not restore Redis: " << e.what() << "\n";
  }
  try {
    if (!postgres_running()) {
      std::cerr << "[faults] restoring PostgreSQL\n";
      start_postgres();
    }
  } catch (const std::exception& e) {
    std::cerr << "[faults] could not restore PostgreSQL: " << e.what() << "\n";
  }
}

// -- load -----------------------------------------------------------------------------------------

load_generator::load_generator(const test::server_process& srv, std::vector<operation> ops,
                               int threads, ms client_timeout, std::chrono::seconds max_duration,
                               std::size_t max_requests)
  : load_generator({endpoint{srv.host(), srv.port()}}, std::move(ops), threads, client_timeout,
                   max_duration, max_requests) {}

load_generator::load_generator(std::vector<endpoint> targets, std::vector<operation> ops,
                               int threads, ms client_timeout, std::chrono::seconds max_duration,
                               std::size_t max_requests)
  : targets_(std::move(targets)),
    ops_(std::move(ops)),
    threads_(threads),
    client_timeout_(client_timeout),
    max_duration_(max_duration),
    max_requests_(max_requests) {}

load_generator::~load_generator() {
  stop();
}

void load_generator::start() {
  stop_ = false;
  for (int i = 0; i < threads_; ++i)
    workers_.emplace_back([this, i] { run(i); });
}

void load_generator::stop() {
  stop_ = true;
  for (auto& t : workers_)
    if (t.joinable())
      t.join();
  workers_.clear();
}

std::vector<sample> load_generator::samples() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return samples_;
}

void load_generator::run(int index) {
  std::mt19937 rng{static_cast<std::uint32_t>(0x5eed + index * 7919)};
  int total_weight = 0;
  for (const auto& op : ops_)
    total_weight += op.weight;
  auto target = static_cast<std::size_t>(index) % targets_.size();
  auto client = std::make_unique<http_client>(targets_[target].host, targets_[target].port,
                                              client_timeout_);
  auto until = steady::now() + max_duration_;
  std::vector<sample> mine;
  while (!stop_ && steady::now() < until && sent_.fetch_add(1) < max_requests_) {
    int pick = std::uniform_int_distribution<int>{0, total_weight - 1}(rng);
    const operation* op = &ops_.front();
    for (const auto& o : ops_) {
      if (pick < o.weight) {
        op = &o;
        break;
      }
      pick -= o.weight;
    }
    sample s;
    s.op = op->name;
    s.port = targets_[target].port;
    s.sent = steady::now();
    try {
      auto res = op->send(*client, rng);
      s.ms = millis(s.sent, steady::now());
      s.status = res.status;
      s.expected = op->accepted.count(res.status) != 0;
      s.problem_json = res.header("content-type").rfind("application/problem+json", 0) == 0;
      s.retry_after = res.has_header("retry-after");
      if (!s.expected)
        s.detail = res.body.substr(0, 300);
    } catch (const std::exception& e) {
      s.ms = millis(s.sent, steady::now());
      s.status = 0;
      s.expected = op->accepted.count(0) != 0;
      s.detail = e.what();
      client->close();
      if (targets_.size() > 1) {
        target = (target + 1) % targets_.size();
        client = std::make_unique<http_client>(targets_[target].host, targets_[target].port,
                                               client_timeout_);
      }
      mine.push_back(std::move(s));
      std::this_thread::sleep_for(ms{20}); // the server is gone: do not spin on refusals
      continue;
    }
    mine.push_back(std::move(s));
  }
  std::lock_guard<std::mutex> guard{mtx_};
  samples_.insert(samples_.end(), mine.begin(), mine.end());
}

window summarize(const std::vector<sample>& samples, steady::time_point from, steady::time_point to,
                 const std::function<bool(const sample&)>& keep) {
  window w;
  auto first = steady::time_point::max();
  for (const auto& s : samples)
    first = std::min(first, s.sent);
  for (const auto& s : samples) {
    if (s.sent < from || s.sent >= to || (keep && !keep(s)))
      continue;
    ++w.requests;
    ++w.by_status[s.status];
    if (s.ms > w.longest_ms) {
      w.longest_ms = s.ms;
      w.longest_op = s.op;
    }
    if (!s.expected) {
      ++w.unexpected;
      if (w.unexpected_examples.size() < 8)
        w.unexpected_examples.push_back(
          s.op + " sent at +" + std::to_string(static_cast<long>(millis(first, s.sent)))
          + " ms of the load -> " + std::to_string(s.status) + " after "
          + std::to_string(static_cast<long>(s.ms)) + " ms: " + s.detail);
    }
    if (s.status == 503 && (!s.problem_json || !s.retry_after))
      ++w.bad_503;
  }
  return w;
}

std::string format_statuses(const std::map<int, std::size_t>& by_status) {
  std::string out;
  for (const auto& [status, n] : by_status) {
    if (!out.empty())
      out += ", ";
    out += (status == 0 ? std::string{"no answer"} : std::to_string(status)) + ": "
           + std::to_string(n);
  }
  return out.empty() ? "none" : out;
}

void report_fault(const std::string& fault, const window& during, double recovery_ms,
                  bool invariants_ok, const std::string& invariants) {
  std::ostringstream line;
  line << "FAULT " << fault << ": requests during the fault " << during.requests << "; answers {"
       << format_statuses(during.by_status) << "}; longest answer "
       << static_cast<long>(during.longest_ms) << " ms";
  if (!during.longest_op.empty())
    line << " (" << during.longest_op << ")";
  line << "; recovered " << static_cast<long>(recovery_ms)
       << " ms after the dependency returned; invariants " << (invariants_ok ? "OK" : "FAILED")
       << " (" << invariants << ")";
  std::cout << line.str() << std::endl;
  WARN(line.str());
  auto path = env_or("EMPORIUM_TEST_FAULTS_SUMMARY", "");
  if (!path.empty()) {
    std::ofstream out{path, std::ios::app};
    out << line.str() << "\n";
  }
}

durable_commits::durable_commits() {
  pqxx::connection conn{test::pg_url()};
  pqxx::nontransaction tx{conn};
  db_ = conn.quote_name(tx.exec("SELECT current_database()").at(0)[0].as<std::string>());
  tx.exec("ALTER DATABASE " + db_ + " SET synchronous_commit = on");
}

durable_commits::~durable_commits() {
  try {
    pqxx::connection conn{test::pg_url()};
    pqxx::nontransaction tx{conn};
    tx.exec("ALTER DATABASE " + db_ + " RESET synchronous_commit");
  } catch (const std::exception& e) {
    std::cerr << "[faults] could not reset synchronous_commit: " << e.what() << "\n";
  }
}

// -- HTTP helpers ---------------------------------------------------------------------------------

test::header_map admin() {
  return {{"Authorization", test::admin_bearer()}};
}

double metric(const std::string& text, const std::string& name) {
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    auto sp = line.rfind(' ');
    if (sp == std::string::npos || line.compare(0, sp, name) != 0)
      continue;
    try {
      return std::stod(line.substr(sp + 1));
    } catch (const std::exception&) {
      return -1;
    }
  }
  return -1;
}

std::string scrape(const test::server_process& srv) {
  auto r = test::http_request(srv.host(), srv.port(), "GET", "/metrics", "", {}, ms{10'000});
  return r.status == 200 ? r.body : std::string{};
}

std::string create_product(http_client& c, std::int64_t stock, std::int64_t price_cents,
                           const std::string& name) {
  json body{{"sku", test::unique("fault-sku")},
            {"name", name},
            {"price_cents", price_cents},
            {"currency", "USD"},
            {"stock", stock},
            {"weight_grams", 100}};
  auto r = c.request("POST", "/products", body.dump(), admin());
  INFO("POST /products -> " << r.status << " " << r.body);
  REQUIRE(r.status == 201);
  return r.json().at("id").get<std::string>();
}

shopper new_shopper(http_client& c) {
  shopper s;
  auto email = test::unique("fault-buyer") + "@example.com";
  auto password = "pw-" + test::unique("secret");
  auto r = c.request("POST", "/customers",
                     json{{"email", email}, {"name", "Buyer"}, {"password", password}}.dump());
  INFO("POST /customers -> " << r.status << " " << r.body);
  REQUIRE(r.status == 201);
  s.id = r.json().at("id").get<std::string>();
  auto l = c.request("POST", "/sessions", json{{"email", email}, {"password", password}}.dump());
  INFO("POST /sessions -> " << l.status << " " << l.body);
  REQUIRE(l.status == 200);
  s.token = l.json().at("token").get<std::string>();
  return s;
}

json address() {
  return json{{"name", "Ada Lovelace"},
              {"line1", "1 Analytical Way"},
              {"city", "Springfield"},
              {"postal_code", "12345"},
              {"country", "US"}};
}

json order_body(const std::vector<std::pair<std::string, int>>& lines) {
  json items = json::array();
  for (const auto& [id, qty] : lines)
    items.push_back({{"product_id", id}, {"quantity", qty}});
  return json{{"items", items}, {"shipping_address", address()}};
}

test::env_map fault_env(test::env_map extra) {
  // A few customers place the whole load's unpaid orders: the per-customer cap is not what
  // these tests break.
  test::env_map env{{"EMPORIUM_RATE_LIMIT_LOGIN_CAPACITY", "1000000"},
                    {"EMPORIUM_RATE_LIMIT_LOGIN_REFILL_PER_S", "1000000"},
                    {"EMPORIUM_ORDERS_MAX_OPEN_UNPAID_PER_CUSTOMER", "10000"}};
  for (auto& [k, v] : extra)
    env[k] = v;
  return env;
}

/// Every order of `customers` in PostgreSQL: id → status.
std::map<std::string, std::string> orders_of(pqxx::connection& conn,
                                             const std::vector<shopper>& customers) {
  std::map<std::string, std::string> out;
  pqxx::read_transaction tx{conn};
  for (const auto& s : customers)
    for (const auto& row :
         tx.exec_params("SELECT id, status FROM orders WHERE customer_id = $1", s.id))
      out[row[0].as<std::string>()] = row[1].as<std::string>();
  return out;
}

} // namespace emporium::faults
