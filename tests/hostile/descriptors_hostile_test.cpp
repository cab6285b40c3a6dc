// Hostile clients against the real server: more idle connections than a 1024 open-files limit
// allows, many connections from one address, and headers and bodies trickled a byte at a time
// (slowloris). The server must keep answering new clients (200, or a 503 that says why), close
// idle and trickling connections at their timeouts, and keep its log small.
//
// Connections are raw sockets, each bound to a loopback source address of its own choosing
// (127.0.0.0/8 is all loopback), so that a flood comes from a few addresses the way it would
// from a few machines. Timing bounds are liveness bounds with wide margins, never speed
// requirements. Each case prints one "HOSTILE ..." line with what it measured.

#include "e2e/server_process.hpp"
#include "gateway/gateway_support.hpp"
#include "hostile/hostile_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

long long ms_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration_cast<milliseconds>(b - a).count();
}

/// The test opens more than a thousand sockets itself.
bool raise_own_open_files(rlim_t wanted) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  ::getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur >= wanted;
}

/// One raw TCP connection from a chosen loopback address.
struct conn {
  int fd = -1;
  std::string got;     ///< every byte received
  bool closed = false; ///< the server closed it (EOF or reset)
  steady::time_point opened{};
  steady::time_point closed_at{};

  conn() = default;
  conn(const conn&) = delete;
  conn& operator=(const conn&) = delete;
  conn(conn&& o) noexcept { *this = std::move(o); }
  conn& operator=(conn&& o) noexcept {
    std::swap(fd, o.fd);
    got = std::move(o.got);
    closed = o.closed;
    opened = o.opened;
    closed_at = o.closed_at;
    return *this;
  }
  ~conn() {
    if (fd >= 0)
      ::close(fd);
  }

  /// Reads what is there without waiting; notes a close.
  void pump() {
    if (closed || fd < 0)
      return;
    char buf[4096];
    for (;;) {
      auto n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        got.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        closed = true;
        closed_at = steady::now();
      }
      return;
    }
  }

  /// False when the server has closed the connection (the write fails).
  bool send(const std::string& bytes) {
    if (closed)
      return false;
    auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      closed = true;
      closed_at = steady::now();
      return false;
    }
    return true;
  }

  /// The status code of the first answer received, or 0.
  int status() const {
    if (got.rfind("HTTP/1.1 ", 0) != 0 || got.size() < 12)
      return 0;
    return std::atoi(got.substr(9, 3).c_str());
  }
};

conn connect_from(const std::string& source, std::uint16_t port) {
  conn c;
  c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(c.fd >= 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &src.sin_addr);
  REQUIRE(::bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof src) == 0);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  INFO("connect from " << source << ": " << std::strerror(errno));
  REQUIRE(::connect(c.fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) == 0);
  c.opened = steady::now();
  return c;
}

/// Waits until every connection is closed or `deadline`; reads what arrives meanwhile.
void wait_closed(std::vector<conn>& cs, steady::time_point deadline) {
  while (steady::now() < deadline) {
    std::vector<pollfd> fds;
    std::vector<conn*> which;
    for (auto& c : cs)
      if (!c.closed) {
        fds.push_back({c.fd, POLLIN | POLLRDHUP, 0});
        which.push_back(&c);
      }
    if (fds.empty())
      return;
    ::poll(fds.data(), fds.size(), 50);
    for (std::size_t i = 0; i < fds.size(); ++i)
      if (fds[i].revents != 0)
        which[i]->pump();
  }
}

/// Lets in-flight answers arrive, then reads them.
void settle(std::vector<conn>& cs, milliseconds pause = milliseconds(500)) {
  std::this_thread::sleep_for(pause);
  for (auto& c : cs)
    c.pump();
}

/// `n` idle connections, `per_address` from each of 127.0.0.<first_octet>, <first_octet + 1>...
std::vector<conn> flood(int n, int per_address, int first_octet, std::uint16_t port) {
  std::vector<conn> cs;
  cs.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    cs.push_back(connect_from("127.0.0." + std::to_string(first_octet + i / per_address), port));
  return cs;
}

/// One request on a new connection from `source`; the answer's status, 0 when none came before
/// `timeout` (or the server closed without one).
int one_request(const std::string& source, std::uint16_t port, const std::string& target,
                milliseconds timeout, std::string* body = nullptr) {
  auto c = connect_from(source, port);
  c.send("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  std::vector<conn> one;
  one.push_back(std::move(c));
  wait_closed(one, steady::now() + timeout);
  if (body)
    *body = one[0].got;
  return one[0].status();
}

struct tally {
  int held = 0;    ///< open, nothing received: the server holds it
  int refused = 0; ///< answered 503 and closed
  int other = 0;   ///< anything else received
  int dropped = 0; ///< closed without an answer
  std::string text() const {
    std::ostringstream out;
    out << "held=" << held << " 503=" << refused << " other=" << other << " dropped=" << dropped;
    return out.str();
  }
};

tally count(const std::vector<conn>& cs) {
  tally t;
  for (const auto& c : cs) {
    if (c.status() == 503)
      ++t.refused;
    else if (!c.got.empty())
      ++t.other;
    else if (c.closed)
      ++t.dropped;
    else
      ++t.held;
  }
  return t;
}

// -- the server process, seen from /proc ----------------------------------------------------------

int open_descriptors(pid_t pid) {
  auto path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(path.c_str());
  if (!d)
    return -1;
  int n = 0;
  while (auto* e = ::readdir(d))
    n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

/// "Max open files" of the process: soft, hard.
std::pair<std::string, std::string> open_files_of(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/limits"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream fields{line.substr(14)};
      std::string soft, hard;
      fields >> soft >> hard;
      return {soft, hard};
    }
  return {};
}

std::vector<std::string> log_lines(const server_process& srv) {
  std::ifstream in{srv.log_path()};
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty())
      out.push_back(line);
  return out;
}

int lines_with(const std::vector<std::string>& lines, const std::string& needle) {
  return static_cast<int>(std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
    return l.find(needle) != std::string::npos;
  }));
}

/// The max_connections the server announced at start.
int announced_max_connections(const server_process& srv) {
  for (const auto& l : log_lines(srv)) {
    auto at = l.find("http.max_connections ");
    if (at != std::string::npos && l.find("per address") != std::string::npos)
      return std::atoi(l.c_str() + at + 21);
  }
  return -1;
}

void report(const std::string& line) {
  emporium::hostile::report_line(line);
}

/// UBSAN_OPTIONS for a server that runs out of descriptors on purpose: the test's own options
/// plus the suppression of UBSan's vptr check, which needs a free descriptor to read a vtable
/// (see scripts/sanitizer/ubsan-out-of-descriptors.supp). Harmless without sanitizers.
std::string out_of_descriptors_ubsan_options() {
  auto options = emporium::test::env_or("UBSAN_OPTIONS", "");
  return options + (options.empty() ? "" : ":")
         + "suppressions=" EMPORIUM_SOURCE_DIR "/scripts/sanitizer/ubsan-out-of-descriptors.supp";
}

const int idle_timeout_ms = 3000;
const int flood_size = 1100;

env_map flood_env(env_map extra = {}) {
  env_map env{{"EMPORIUM_HTTP_IDLE_TIMEOUT_MS", std::to_string(idle_timeout_ms)},
              {"EMPORIUM_HTTP_HEADER_TIMEOUT_MS", "2000"}};
  for (auto& [k, v] : extra)
    env[k] = v;
  return env;
}

} // namespace

TEST_CASE(
  "descriptors: under a soft limit of 1024 the server raises its limit, holds 1,100 idle "
  "connections, answers new clients, and closes the idle ones at the idle timeout",
  "[hostile][descriptors]") {
  REQUIRE(raise_own_open_files(4096));
  rlimit own{};
  ::getrlimit(RLIMIT_NOFILE, &own);
  if (own.rlim_max < 2048) {
    WARN("the hard open-files limit here is " << own.rlim_max << ": nothing to raise to");
    return;
  }
  server_process srv{flood_env(), open_files_limit{1024, 0}};
  auto limits = open_files_of(srv.pid());
  INFO("server's Max open files: " << limits.first << " " << limits.second);
  CHECK(limits.first == limits.second); // soft raised to hard
  CHECK(limits.first != "1024");
  auto rss_before = srv.rss_kib();

  // 11 addresses, 100 connections each: under the per-address cap (256).
  auto cs = flood(flood_size, 100, 2, srv.port());
  settle(cs);
  auto t = count(cs);
  auto rss_during = srv.rss_kib();
  auto fds_during = open_descriptors(srv.pid());
  INFO(t.text());
  CHECK(t.held == flood_size);

  // A new client is answered as usual, by the handlers that need nothing and those that do.
  std::string body;
  auto health = one_request("127.0.0.1", srv.port(), "/healthz", milliseconds(5000), &body);
  INFO("new client got: " << body.substr(0, 300));
  CHECK(health == 200);
  auto products = one_request("127.0.0.1", srv.port(), "/products?limit=1", milliseconds(5000));
  CHECK(products == 200);

  // The idle ones are closed at the idle timeout: not before, and not long after.
  wait_closed(cs, steady::now() + milliseconds(idle_timeout_ms + 10'000));
  long long first_ms = 1'000'000, last_ms = 0;
  int closed = 0;
  for (const auto& c : cs)
    if (c.closed) {
      ++closed;
      first_ms = std::min(first_ms, ms_between(c.opened, c.closed_at));
      last_ms = std::max(last_ms, ms_between(c.opened, c.closed_at));
    }
  CHECK(closed == flood_size);
  CHECK(first_ms >= idle_timeout_ms - 500);
  CHECK(last_ms <= idle_timeout_ms + 8'000);
  CHECK(count(cs).other == 0); // closed silently

  auto lines = log_lines(srv);
  CHECK(lines.size() < 100);
  CHECK(lines_with(lines, "accept failed") == 0);
  std::ostringstream out;
  out << "soft-1024: server limit " << limits.first << "/" << limits.second << "; " << flood_size
      << " idle connections: " << t.text() << "; new client /healthz " << health << ", /products "
      << products << "; idle closed " << closed << " after " << first_ms << ".." << last_ms
      << " ms; server RSS " << rss_before << " -> " << rss_during << " KiB, descriptors "
      << fds_during << "; log " << lines.size() << " lines";
  report(out.str());
}

TEST_CASE(
  "descriptors: with a hard limit of 1024 too, connections past the derived "
  "http.max_connections get a 503 at once and new clients are answered, not left hanging",
  "[hostile][descriptors]") {
  REQUIRE(raise_own_open_files(4096));
  server_process srv{flood_env(), open_files_limit{1024, 1024}};
  auto max = announced_max_connections(srv);
  CHECK(max == 1024 - 72); // 64 + 2 * postgres.pool_size (4) kept for the rest
  auto rss_before = srv.rss_kib();
  auto fds_idle = open_descriptors(srv.pid());

  auto cs = flood(flood_size, 100, 2, srv.port());
  settle(cs, milliseconds(1000));
  auto t = count(cs);
  auto rss_during = srv.rss_kib();
  auto fds_during = open_descriptors(srv.pid());
  INFO(t.text() << "; server descriptors " << fds_idle << " idle, " << fds_during << " flooded");
  CHECK(t.held == max);
  CHECK(t.refused == flood_size - max);
  CHECK(t.dropped == 0);
  CHECK(fds_during < 1024);

  // A new client is told at once (503, Retry-After), rather than waiting in silence.
  std::string body;
  auto during = one_request("127.0.0.1", srv.port(), "/healthz", milliseconds(5000), &body);
  INFO("new client got: " << body);
  CHECK(during == 503);
  CHECK(body.find("Retry-After: 1") != std::string::npos);
  CHECK(body.find("application/problem+json") != std::string::npos);
  CHECK(body.find("too many connections") != std::string::npos);

  // Once the idle connections are closed, new clients are served again.
  wait_closed(cs, steady::now() + milliseconds(idle_timeout_ms + 10'000));
  CHECK(count(cs).held == 0);
  int after = 0;
  for (int i = 0; i < 50 && after != 200; ++i) {
    after = one_request("127.0.0.1", srv.port(), "/healthz", milliseconds(5000));
    if (after != 200)
      std::this_thread::sleep_for(milliseconds(100));
  }
  CHECK(after == 200);

  auto lines = log_lines(srv);
  CHECK(lines.size() < 100);
  CHECK(lines_with(lines, "accept failed") == 0);
  auto per_connection = max > 0 ? (rss_during - rss_before) / max : 0;
  std::ostringstream out;
  out << "hard-1024: http.max_connections " << max << "; " << flood_size
      << " idle connections: " << t.text() << "; new client during " << during << ", after "
      << after << "; server RSS " << rss_before << " -> " << rss_during << " KiB (~"
      << per_connection << " KiB per connection), descriptors " << fds_idle << " -> " << fds_during
      << "; log " << lines.size() << " lines";
  report(out.str());
}

TEST_CASE(
  "descriptors: http.max_connections set above the limit: accept pauses on EMFILE with "
  "one warning, the waiting client is served once idle connections close",
  "[hostile][descriptors]") {
  REQUIRE(raise_own_open_files(4096));
  server_process srv{flood_env({{"EMPORIUM_HTTP_MAX_CONNECTIONS", "5000"},
                                {"UBSAN_OPTIONS", out_of_descriptors_ubsan_options()}}),
                     open_files_limit{1024, 1024}};
  auto cs = flood(flood_size, 100, 2, srv.port());
  settle(cs, milliseconds(1000));
  auto t = count(cs);
  auto fds_during = open_descriptors(srv.pid());
  auto rss_during = srv.rss_kib();
  INFO(t.text() << "; server descriptors " << fds_during);
  // Past the limit the kernel completes the handshakes into the listen backlog: the clients
  // are connected, the server has not accepted them. Nothing is refused, nothing dropped.
  CHECK(t.held == flood_size);
  CHECK(fds_during >= 1000);

  // A new client waits in the backlog too, and is served once the idle ones are closed.
  auto t0 = steady::now();
  std::string body;
  auto status = one_request("127.0.0.1", srv.port(), "/healthz",
                            milliseconds(idle_timeout_ms + 15'000), &body);
  auto waited = ms_between(t0, steady::now());
  INFO("new client got after " << waited << " ms: " << body.substr(0, 300));
  CHECK(status == 200);

  wait_closed(cs, steady::now() + milliseconds(2 * idle_timeout_ms + 10'000));
  CHECK(count(cs).held == 0);
  // Back to normal.
  CHECK(one_request("127.0.0.1", srv.port(), "/healthz", milliseconds(5000)) == 200);

  auto lines = log_lines(srv);
  auto warnings = lines_with(lines, "accept failed");
  auto recovered = lines_with(lines, "accepting again");
  CHECK(lines.size() < 100);
  CHECK(warnings >= 1);
  CHECK(warnings <= 3); // one per episode
  CHECK(recovered == warnings);
  CHECK(lines_with(lines, "does not fit the open-files limit") == 1);
  std::ostringstream out;
  out << "emfile: http.max_connections 5000 over a 1024 limit; " << flood_size
      << " idle connections: " << t.text() << "; server descriptors " << fds_during << ", RSS "
      << rss_during << " KiB; new client " << status << " after " << waited << " ms; log "
      << lines.size() << " lines (" << warnings << " accept warning(s), " << recovered
      << " recovery line(s))";
  report(out.str());
}

TEST_CASE(
  "descriptors: http.max_connections_per_address: one address gets 503 past it, others "
  "and trusted proxies do not",
  "[hostile][descriptors]") {
  REQUIRE(raise_own_open_files(4096));
  server_process srv{flood_env({{"EMPORIUM_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "50"},
                                {"EMPORIUM_HTTP_TRUSTED_PROXIES", "127.0.0.30"}})};
  auto greedy = flood(60, 60, 20, srv.port()); // all from 127.0.0.20
  settle(greedy);
  auto t = count(greedy);
  INFO(t.text());
  CHECK(t.held == 50);
  CHECK(t.refused == 10);
  for (const auto& c : greedy)
    if (c.status() == 503)
      CHECK(c.got.find("too many connections from this address") != std::string::npos);

  std::string body;
  CHECK(one_request("127.0.0.20", srv.port(), "/healthz", milliseconds(5000), &body) == 503);
  CHECK(one_request("127.0.0.21", srv.port(), "/healthz", milliseconds(5000)) == 200);
  // A trusted proxy carries many clients: only the total limit applies to it.
  auto proxy = flood(80, 80, 30, srv.port());
  settle(proxy);
  CHECK(count(proxy).held == 80);
  CHECK(one_request("127.0.0.30", srv.port(), "/healthz", milliseconds(5000)) == 200);

  // Closing some makes room for that address again.
  for (int i = 0; i < 5; ++i) {
    auto it = std::find_if(greedy.begin(), greedy.end(), [](const conn& c) { return !c.closed; });
    REQUIRE(it != greedy.end());
    ::close(it->fd);
    it->fd = -1;
    it->closed = true;
  }
  int status = 0;
  for (int i = 0; i < 50 && status != 200; ++i) {
    status = one_request("127.0.0.20", srv.port(), "/healthz", milliseconds(5000));
    if (status != 200)
      std::this_thread::sleep_for(milliseconds(50));
  }
  CHECK(status == 200);
  auto m = scrape(srv);
  CHECK(metric_value(m, "emporium_http_connections_refused_total") >= 11.0);
  report("per-address: cap 50, 60 connections from one address: " + t.text()
         + "; 80 from a trusted proxy all held");
}

TEST_CASE(
  "descriptors: slowloris: headers and bodies trickled a byte at a time are cut at their "
  "timeouts while other clients are served",
  "[hostile][slowloris]") {
  REQUIRE(raise_own_open_files(4096));
  const int header_timeout = 2000, body_timeout = 2000;
  // A long idle timeout: only the header and body timeouts may cut these.
  server_process srv{{{"EMPORIUM_HTTP_IDLE_TIMEOUT_MS", "60000"},
                      {"EMPORIUM_HTTP_HEADER_TIMEOUT_MS", std::to_string(header_timeout)},
                      {"EMPORIUM_HTTP_BODY_TIMEOUT_MS", std::to_string(body_timeout)}}};
  const std::string header = "POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
                             + std::string(200, 'x') + "\r\n";
  const std::string body_header =
    "POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
  std::vector<conn> heads = flood(200, 50, 40, srv.port());
  std::vector<conn> bodies = flood(50, 50, 45, srv.port());
  for (auto& c : bodies)
    c.send(body_header);
  auto rss_before = srv.rss_kib();

  // One byte every 250 ms on each, until the server closes it or 20 s pass; other clients are
  // served meanwhile.
  auto t0 = steady::now();
  std::size_t sent = 0;
  int served = 0, asked = 0;
  while (ms_between(t0, steady::now()) < 20'000) {
    bool any = false;
    for (auto& c : heads) {
      c.pump();
      if (!c.closed && sent < header.size()) {
        c.send(header.substr(sent, 1));
        any = true;
      }
    }
    for (auto& c : bodies) {
      c.pump();
      if (!c.closed) {
        c.send("{");
        any = true;
      }
    }
    ++sent;
    if (!any)
      break;
    if (sent % 4 == 0) {
      ++asked;
      served += one_request("127.0.0.1", srv.port(), "/healthz", milliseconds(3000)) == 200;
    }
    std::this_thread::sleep_for(milliseconds(250));
  }
  auto rss_during = srv.rss_kib();
  wait_closed(heads, steady::now() + milliseconds(1000));
  wait_closed(bodies, steady::now() + milliseconds(1000));

  auto spread = [](const std::vector<conn>& cs, long long& lo, long long& hi) {
    lo = 1'000'000;
    hi = 0;
    int closed = 0;
    for (const auto& c : cs)
      if (c.closed) {
        ++closed;
        lo = std::min(lo, ms_between(c.opened, c.closed_at));
        hi = std::max(hi, ms_between(c.opened, c.closed_at));
      }
    return closed;
  };
  long long head_lo = 0, head_hi = 0, body_lo = 0, body_hi = 0;
  auto heads_closed = spread(heads, head_lo, head_hi);
  auto bodies_closed = spread(bodies, body_lo, body_hi);
  INFO("headers cut after " << head_lo << ".." << head_hi << " ms, bodies after " << body_lo << ".."
                            << body_hi << " ms");
  CHECK(heads_closed == 200);
  CHECK(bodies_closed == 50);
  CHECK(count(heads).other == 0); // never answered: the request never completed
  CHECK(head_lo >= header_timeout - 500);
  CHECK(head_hi <= header_timeout + 6000);
  CHECK(body_lo >= body_timeout - 500);
  CHECK(body_hi <= body_timeout + 6000);
  CHECK(asked >= 2);
  CHECK(served == asked);
  auto lines = log_lines(srv);
  CHECK(lines.size() < 100);
  std::ostringstream out;
  out << "slowloris: 200 header and 50 body tricklers; headers cut after " << head_lo << ".."
      << head_hi << " ms (timeout " << header_timeout << "), bodies after " << body_lo << ".."
      << body_hi << " ms (timeout " << body_timeout << "); other clients served " << served << "/"
      << asked << "; server RSS " << rss_before << " -> " << rss_during << " KiB; log "
      << lines.size() << " lines";
  report(out.str());
}
