#include "gateway/gateway_support.hpp"

#include "core/ids.hpp"
#include "persistence/cache.hpp"
#include "support/test_env.hpp"

#include <hiredis/hiredis.h>
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace emporium::test {

namespace {

redisContext* connect_redis(std::uint16_t port) {
  std::string error;
  return persistence::connect_redis({"127.0.0.1", port, "", 0}, std::chrono::seconds(1), error);
}

} // namespace

bool redis_ping(std::uint16_t port) {
  auto* ctx = connect_redis(port);
  if (!ctx)
    return false;
  auto* r = static_cast<redisReply*>(redisCommand(ctx, "PING"));
  bool ok = r && r->type == REDIS_REPLY_STATUS && std::string{r->str} == "PONG";
  if (r)
    freeReplyObject(r);
  redisFree(ctx);
  return ok;
}

redis_process::redis_process() : port_(pick_free_port()) {
  start();
}

redis_process::~redis_process() {
  kill();
}

void redis_process::start() {
  if (pid_ > 0)
    return;
  std::string port = std::to_string(port_);
  std::vector<std::string> args{"redis-server", "--port",     port,     "--bind",
                                "127.0.0.1",    "--save",     "",       "--appendonly",
                                "no",           "--loglevel", "warning"};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127);
    int null_fd = ::open("/dev/null", O_RDWR);
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
      for (int fd = 3; fd < 4096; ++fd)
        ::close(fd);
    ::execvp("redis-server", argv.data());
    ::_exit(127);
  }
  pid_ = child;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (redis_ping(port_))
      return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL("redis-server exited at start on port " << port_ << " (is it installed?)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("redis-server did not answer PING on port " << port_ << " within 20 s");
}

void redis_process::kill() {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool redis_process::exists(const std::string& key) const {
  auto* ctx = connect_redis(port_);
  if (!ctx)
    return false;
  auto* r = static_cast<redisReply*>(redisCommand(ctx, "EXISTS %b", key.data(), key.size()));
  bool found = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
  if (r)
    freeReplyObject(r);
  redisFree(ctx);
  return found;
}

std::optional<double> metric_value(const std::string& exposition, const std::string& sample) {
  std::istringstream in{exposition};
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0
        && line[sample.size()] == ' ')
      return std::strtod(line.c_str() + sample.size() + 1, nullptr);
  }
  return std::nullopt;
}

std::string scrape(const server_process& srv) {
  auto r = http_request(srv.host(), srv.port(), "GET", "/metrics");
  REQUIRE(r.status == 200);
  return r.body;
}

std::vector<nlohmann::json> json_log_lines(const server_process& srv) {
  std::vector<nlohmann::json> out;
  std::ifstream in{srv.log_path()};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line.front() != '{')
      continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object())
      out.push_back(std::move(j));
  }
  return out;
}

std::string fresh_token() {
  // The server's token format (gateway::sign_token), written out again on the client's side:
  // the token, '.', 32 hex of HMAC-SHA-256 under a key derived from the admin key's hash.
  auto key = emporium::core::sha256_hex("emporium/session-token/v1:"
                                        + emporium::core::sha256_hex(test_admin_key));
  auto token = unique("gw-token");
  return token + "." + emporium::core::hmac_sha256_hex(key, token).substr(0, 32);
}

std::string fresh_address() {
  static std::atomic<std::uint32_t> next{0};
  // Different test processes draw different addresses too (one Redis may be shared).
  static const std::uint32_t base = static_cast<std::uint32_t>(::getpid()) * 1024u;
  auto n = (base + next.fetch_add(1)) % (1u << 17);
  return "198." + std::to_string(18 + (n >> 16)) + "." + std::to_string((n >> 8) & 0xff) + "."
         + std::to_string(n & 0xff);
}

customer_sessions new_customer(http_client& c, int sessions) {
  customer_sessions out;
  out.email = unique("gw-customer") + "@example.com";
  out.password = "pw-" + unique("secret");
  auto r = c.request(
    "POST", "/customers",
    nlohmann::json{{"email", out.email}, {"name", "Gw"}, {"password", out.password}}.dump());
  INFO("POST /customers: " << r.status << " " << r.body);
  REQUIRE(r.status == 201);
  out.id = r.json().at("id").get<std::string>();
  for (int i = 0; i < sessions; ++i) {
    auto l = c.request("POST", "/sessions",
                       nlohmann::json{{"email", out.email}, {"password", out.password}}.dump());
    INFO("POST /sessions: " << l.status << " " << l.body);
    REQUIRE(l.status == 200);
    out.tokens.push_back(l.json().at("token").get<std::string>());
  }
  return out;
}

header_map bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

std::string unsigned_token() {
  return unique("gw-made-up");
}

int run_with_input(const std::string& cmd, const std::string& input, std::string& output) {
  auto dir = env_or("EMPORIUM_TEST_TMP", "/tmp");
  auto in_path = dir + "/" + unique("gw-in") + ".txt";
  auto out_path = dir + "/" + unique("gw-out") + ".txt";
  {
    std::ofstream f{in_path, std::ios::binary};
    f << input;
  }
  int raw = std::system((cmd + " < '" + in_path + "' > '" + out_path + "' 2>&1").c_str());
  std::ifstream f{out_path, std::ios::binary};
  std::stringstream ss;
  ss << f.rdbuf();
  output = ss.str();
  std::remove(in_path.c_str());
  std::remove(out_path.c_str());
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

} // namespace emporium::test
