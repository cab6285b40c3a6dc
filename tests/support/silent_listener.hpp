#pragma once
/// A TCP port on loopback that accepts connections (the kernel completes the handshake into the
/// backlog) but never reads or answers: a hung server, for tests of client timeouts. It counts
/// the connections clients made to it (connections()), so a test can tell how often a client
/// tried.

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace emporium::test {

struct silent_listener {
  int fd = -1;
  int port = 0;
  silent_listener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd, 64) == 0);
    socklen_t len = sizeof(addr);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }
  ~silent_listener() {
    for (int c : accepted)
      ::close(c);
    if (fd >= 0)
      ::close(fd);
  }
  /// The connections made to the port so far, closed by their clients or not: each is taken
  /// out of the backlog here and kept open (never read) until the listener goes.
  std::size_t connections() {
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
      int c = ::accept(fd, nullptr, nullptr);
      if (c < 0)
        break;
      accepted.push_back(c);
    }
    return accepted.size();
  }
  std::vector<int> accepted;
  silent_listener(const silent_listener&) = delete;
  silent_listener& operator=(const silent_listener&) = delete;
};

} // namespace emporium::test
