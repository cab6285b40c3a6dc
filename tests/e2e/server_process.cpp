#include "e2e/server_process.hpp"

#include "e2e/http_client.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

extern char** environ;

#ifndef EMPORIUM_BINARY
#error "EMPORIUM_BINARY must name the emporium executable"
#endif

namespace emporium::test {

namespace {

using steady = std::chrono::steady_clock;

int decode_status(int raw) {
  if (WIFEXITED(raw))
    return WEXITSTATUS(raw);
  if (WIFSIGNALED(raw))
    return 128 + WTERMSIG(raw);
  return -1;
}

std::string new_log_path() {
  static std::atomic<int> counter{0};
  auto dir = env_or("EMPORIUM_TEST_TMP", "/tmp");
  return dir + "/emporium-e2e-" + std::to_string(getpid()) + "-"
         + std::to_string(counter.fetch_add(1)) + ".log";
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

} // namespace

std::uint16_t pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw std::runtime_error(std::string{"socket: "} + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string{"bind: "} + std::strerror(errno));
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

server_process::server_process(env_map extra_env)
  : extra_env_(std::move(extra_env)), log_path_(new_log_path()) {
  start();
}

server_process::server_process(env_map extra_env, open_files_limit files)
  : extra_env_(std::move(extra_env)), files_(files), log_path_(new_log_path()) {
  start();
}

server_process::~server_process() {
  if (running()) {
    // Stopped as in production, so that the server exits by itself: under the sanitizers its
    // exit is where LeakSanitizer checks it (a killed process is never checked). A frozen
    // server is thawed first; SIGKILL only when it does not exit within the grace period.
    ::kill(pid_, SIGCONT);
    if (!term_sent_)
      ::kill(pid_, SIGTERM);
    int status = wait_exit(std::chrono::seconds{destructor_grace_s});
    if (status == -1) {
      ::kill(pid_, SIGKILL);
      reap(true);
      std::fprintf(stderr,
                   "server_process: the server did not exit within %d s of SIGTERM (killed); "
                   "log %s\n",
                   destructor_grace_s, log_path_.c_str());
    } else if (status != 0) {
      std::fprintf(stderr,
                   "server_process: the server exited with status %d after SIGTERM; log %s\n",
                   status, log_path_.c_str());
    }
  }
  if (env_or("EMPORIUM_TEST_KEEP_LOGS", "").empty())
    ::unlink(log_path_.c_str());
}

bool server_process::reap(bool block) {
  if (pid_ <= 0)
    return true;
  int raw = 0;
  for (;;) {
    pid_t r = ::waitpid(pid_, &raw, block ? 0 : WNOHANG);
    if (r == pid_) {
      status_ = decode_status(raw);
      pid_ = -1;
      return true;
    }
    if (r == 0)
      return false;
    if (errno == EINTR)
      continue;
    // ECHILD: somebody else reaped it; it is gone either way.
    pid_ = -1;
    return true;
  }
}

long server_process::rss_kib() const {
  std::ifstream status{"/proc/" + std::to_string(pid_) + "/status"};
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

bool server_process::running() {
  return pid_ > 0 && !reap(false);
}

std::string server_process::log_tail(std::size_t bytes) const {
  std::ifstream in{log_path_, std::ios::binary};
  std::stringstream ss;
  ss << in.rdbuf();
  auto all = ss.str();
  return all.size() > bytes ? "..." + all.substr(all.size() - bytes) : all;
}

/// Forks and execs the server; false (and why) when it exited during start-up.
bool server_process::spawn(std::string& why) {
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv{*e};
    if (starts_with(kv, "EMPORIUM_") && !starts_with(kv, "EMPORIUM_TEST_"))
      continue;
    // A variable the test sets itself replaces this process's (getenv finds the first).
    auto name = kv.substr(0, kv.find('='));
    if (extra_env_.count(name))
      continue;
    env.push_back(std::move(kv));
  }
  env_map vars{
    {"EMPORIUM_PG_URL", pg_url()},
    {"EMPORIUM_REDIS_URL", redis_url()},
    {"EMPORIUM_HTTP_PORT", std::to_string(port_)},
    {"EMPORIUM_ADMIN_KEY", test_admin_key},
    // Many requests from one address in little time: keep the rate limiter out of the way.
    {"EMPORIUM_RATE_CAPACITY", "1000000"},
    {"EMPORIUM_RATE_REFILL", "1000000"},
    // Logins have their own, much stricter bucket; tests log in many customers.
    {"EMPORIUM_RATE_LIMIT_LOGIN_CAPACITY", "1000000"},
    {"EMPORIUM_RATE_LIMIT_LOGIN_REFILL_PER_S", "1000000"},
    // Sign-ups too: tests create many customers.
    {"EMPORIUM_RATE_LIMIT_SIGNUP_CAPACITY", "1000000"},
    {"EMPORIUM_RATE_LIMIT_SIGNUP_REFILL_PER_S", "1000000"},
  };
  for (const auto& [k, v] : extra_env_)
    vars[k] = v;
  for (const auto& [k, v] : vars)
    env.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& kv : env)
    envp.push_back(kv.data());
  envp.push_back(nullptr);
  std::string binary = EMPORIUM_BINARY;
  std::string serve = "serve";
  char* argv[] = {binary.data(), serve.data(), nullptr};

  int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0)
    FAIL("cannot open the server log " << log_path_ << ": " << std::strerror(errno));
  {
    std::string marker = "\n===== e2e: starting " + binary + " serve on port "
                         + std::to_string(port_) + " =====\n";
    (void) !::write(log_fd, marker.data(), marker.size());
  }
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = ::getpid();
  rlimit files{};
  bool set_files = files_.soft != 0 || files_.hard != 0;
  if (set_files) {
    ::getrlimit(RLIMIT_NOFILE, &files);
    if (files_.hard != 0)
      files.rlim_max = files_.hard;
    if (files_.soft != 0)
      files.rlim_cur = files_.soft;
    files.rlim_cur = std::min(files.rlim_cur, files.rlim_max);
  }

  pid_t child = ::fork();
  if (child < 0) {
    ::close(log_fd);
    ::close(null_fd);
    FAIL("fork failed: " << std::strerror(errno));
  }
  if (child == 0) {
    // Die with the test process, however it ends.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127);
    // Default signal dispositions and an empty mask, whatever the test runner installed.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGCHLD})
      ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    if (set_files && ::setrlimit(RLIMIT_NOFILE, &files) != 0) {
      const char msg[] = "e2e: setrlimit(RLIMIT_NOFILE) failed\n";
      (void) !::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    // The test's own sockets must not live on in the server (Asio does not set O_CLOEXEC).
    if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
      for (int fd = 3; fd < 4096; ++fd)
        ::close(fd);
    ::execve(argv[0], argv, envp.data());
    const char msg[] = "e2e: execve failed\n";
    (void) !::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  pid_ = child;
  status_ = -1;
  term_sent_ = false;

  auto deadline = steady::now() + std::chrono::seconds(30);
  while (steady::now() < deadline) {
    if (!running()) {
      why = "the server exited with status " + std::to_string(status_) + " during start-up";
      return false;
    }
    try {
      auto res = http_request(host(), port_, "GET", "/healthz", "", {},
                              std::chrono::milliseconds(1000));
      if (res.status == 200)
        return true;
    } catch (const std::exception&) {
      // not listening yet
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid_, SIGKILL);
  reap(true);
  FAIL("the server did not answer GET /healthz on port " << port_ << " within 30 s; log "
                                                         << log_path_ << ":\n"
                                                         << log_tail());
  return false;
}

void server_process::start() {
  if (running())
    return;
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (port_ == 0 || attempt > 0)
      port_ = pick_free_port();
    std::string why;
    if (spawn(why))
      return;
    // Only a port taken between picking it and the server binding it is worth another try.
    auto tail = log_tail(2000);
    bool port_taken = tail.find("in use") != std::string::npos;
    if (!port_taken)
      FAIL(why << "; log " << log_path_ << ":\n" << log_tail());
  }
  FAIL("the server could not bind a free port in 4 attempts; log " << log_path_ << ":\n"
                                                                   << log_tail());
}

void server_process::send_signal(int sig) {
  if (pid_ > 0) {
    ::kill(pid_, sig);
    if (sig == SIGTERM)
      term_sent_ = true;
  }
}

int server_process::wait_exit(std::chrono::milliseconds limit) {
  auto deadline = steady::now() + limit;
  for (;;) {
    if (!running())
      return status_;
    if (steady::now() >= deadline)
      return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int server_process::stop_term(std::chrono::seconds grace) {
  if (!running())
    return status_;
  ::kill(pid_, SIGTERM);
  term_sent_ = true;
  int status = wait_exit(grace);
  if (status == -1) {
    ::kill(pid_, SIGKILL);
    reap(true);
    FAIL("the server did not exit within " << grace.count() << " s of SIGTERM (killed); log "
                                           << log_path_ << ":\n"
                                           << log_tail());
  }
  return status;
}

void server_process::kill9() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    reap(true);
  }
}

server_process& shared_server() {
  static server_process server;
  server.start(); // a test may have stopped it
  return server;
}

int server_process::restart() {
  int status = stop_term();
  start();
  return status;
}

} // namespace emporium::test
