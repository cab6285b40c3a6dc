#include "config/net_address.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace emporium::config {

std::string ip_address::text() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<ip_address> parse_ip(std::string_view text) {
  // inet_pton wants a terminated string; anything longer than the longest address is not one.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN)
    return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, text.data(), text.size());
  ip_address a;
  if (::inet_pton(AF_INET, buf, a.bytes.data()) == 1)
    return a;
  if (::inet_pton(AF_INET6, buf, a.bytes.data()) != 1)
    return std::nullopt;
  static constexpr std::uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(std::begin(mapped_prefix), std::end(mapped_prefix), a.bytes.begin())) {
    std::array<std::uint8_t, 16> v4{};
    std::copy(a.bytes.begin() + 12, a.bytes.end(), v4.begin());
    a.bytes = v4;
    return a;
  }
  a.v6 = true;
  return a;
}

namespace {

ip_address masked(ip_address a, int prefix) {
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(prefix - i * 8, 0, 8);
    a.bytes[static_cast<std::size_t>(i)] &= static_cast<std::uint8_t>(0xff00 >> keep);
  }
  return a;
}

} // namespace

cidr_block cidr_block::of(const ip_address& a, int prefix) {
  prefix = std::clamp(prefix, 0, a.bits());
  return cidr_block{masked(a, prefix), prefix};
}

bool cidr_block::contains(const ip_address& a) const {
  return a.v6 == network.v6 && masked(a, prefix) == network;
}

std::string cidr_block::text() const {
  return network.text() + "/" + std::to_string(prefix);
}

std::optional<cidr_block> parse_cidr(std::string_view text) {
  auto slash = text.find('/');
  auto ip = parse_ip(text.substr(0, slash));
  if (!ip)
    return std::nullopt;
  // A mapped IPv6 block (::ffff:10.0.0.0/104) is the IPv4 block it maps.
  bool mapped = text.substr(0, slash).find(':') != std::string_view::npos && !ip->v6;
  int prefix = ip->bits();
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3
        || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::nullopt;
    prefix = std::stoi(std::string{digits});
    if (mapped) {
      if (prefix < 96)
        return std::nullopt;
      prefix -= 96;
    }
    if (prefix > ip->bits())
      return std::nullopt;
  }
  return cidr_block::of(*ip, prefix);
}

} // namespace emporium::config
