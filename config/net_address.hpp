#pragma once
/// IP addresses and CIDR blocks, as written in the configuration (http.trusted_proxies) and as
/// seen on the wire (peer addresses, X-Forwarded-For entries). Pure functions over text, so the
/// settings can be validated at start and the gateway unit-tested without sockets.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace emporium::config {

struct ip_address {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{}; ///< IPv4 in the first 4 bytes

  int bits() const { return v6 ? 128 : 32; }
  /// Canonical text: dotted quad, or RFC 5952 IPv6 (what inet_ntop writes).
  std::string text() const;
  friend bool operator==(const ip_address& a, const ip_address& b) {
    return a.v6 == b.v6 && a.bytes == b.bytes;
  }
};

/// A plain IPv4 or IPv6 address (no brackets, port or zone). An IPv4-mapped IPv6 address
/// (`::ffff:192.0.2.1`) is the IPv4 address: a dual-stack listener shows IPv4 clients that way.
std::optional<ip_address> parse_ip(std::string_view text);

struct cidr_block {
  ip_address network; ///< host bits cleared
  int prefix = 0;

  /// The block of `prefix` bits around `a` (its host bits cleared).
  static cidr_block of(const ip_address& a, int prefix);

  bool contains(const ip_address& a) const;
  std::string text() const;
};

/// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a block of one). Nothing when malformed
/// or when the prefix is longer than the address. Host bits set after the prefix
/// (`10.1.2.3/8`) are accepted and cleared, as routers do.
std::optional<cidr_block> parse_cidr(std::string_view text);

} // namespace emporium::config
