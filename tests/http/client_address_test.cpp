// Who a client is behind proxies: addresses and CIDR blocks (http.trusted_proxies),
// X-Forwarded-For resolution, IPv6 /64 keys, health probes, and the connection limit derived
// from the open-files limit.

#include "config/net_address.hpp"
#include "config/settings.hpp"
#include "http/gateway.hpp"
#include "http/server.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace emporium;
using config::parse_cidr;
using config::parse_ip;

namespace {

std::vector<config::cidr_block> blocks(std::vector<std::string> text) {
  auto out = http::gateway::parse_trusted(text);
  REQUIRE(out.size() == text.size());
  return out;
}

std::string resolve(const std::string& peer, std::vector<std::string_view> xff,
                    const std::vector<config::cidr_block>& trusted) {
  return http::gateway::client_address(peer, xff, trusted);
}

std::string config_error_of(const std::string& value) {
  config::settings s;
  config::apply_environment(s, {{"EMPORIUM_HTTP_TRUSTED_PROXIES", value}});
  try {
    config::validate(s);
  } catch (const config::config_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST_CASE("addresses: IPv4, IPv6, IPv4-mapped IPv6 counts as IPv4, garbage is none",
          "[gateway][address]") {
  REQUIRE(parse_ip("192.0.2.1"));
  CHECK_FALSE(parse_ip("192.0.2.1")->v6);
  CHECK(parse_ip("192.0.2.1")->text() == "192.0.2.1");
  REQUIRE(parse_ip("2001:DB8::1"));
  CHECK(parse_ip("2001:DB8::1")->v6);
  CHECK(parse_ip("2001:DB8::1")->text() == "2001:db8::1");
  auto mapped = parse_ip("::ffff:192.0.2.1");
  REQUIRE(mapped);
  CHECK_FALSE(mapped->v6);
  CHECK(*mapped == *parse_ip("192.0.2.1"));
  for (const char* bad :
       {"", "unknown", "192.0.2", "192.0.2.256", "192.0.2.1 ", " 192.0.2.1", "[::1]", "::1%eth0",
        "1.2.3.4:80", "2001:db8::g", "_hidden", "0x7f.0.0.1", "::ffff:999.0.0.1"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(parse_ip(bad));
  }
  CHECK_FALSE(parse_ip(std::string(100, '1')));
}

TEST_CASE("CIDR blocks: parsed, host bits cleared, matched by family and prefix",
          "[gateway][address]") {
  auto b = parse_cidr("10.0.0.0/8");
  REQUIRE(b);
  CHECK(b->text() == "10.0.0.0/8");
  CHECK(b->contains(*parse_ip("10.255.1.2")));
  CHECK_FALSE(b->contains(*parse_ip("11.0.0.1")));
  CHECK_FALSE(b->contains(*parse_ip("::ffff:11.0.0.1")));
  CHECK(b->contains(*parse_ip("::ffff:10.1.1.1"))); // mapped counts as IPv4
  CHECK_FALSE(b->contains(*parse_ip("a00::1")));    // other family, same leading bits

  CHECK(parse_cidr("10.1.2.3/8")->text() == "10.0.0.0/8");
  CHECK(parse_cidr("192.0.2.130/25")->contains(*parse_ip("192.0.2.255")));
  CHECK_FALSE(parse_cidr("192.0.2.130/25")->contains(*parse_ip("192.0.2.127")));
  // A bare address is a block of one.
  CHECK(parse_cidr("192.0.2.7")->text() == "192.0.2.7/32");
  CHECK(parse_cidr("192.0.2.7")->contains(*parse_ip("192.0.2.7")));
  CHECK_FALSE(parse_cidr("192.0.2.7")->contains(*parse_ip("192.0.2.8")));
  CHECK(parse_cidr("::1")->text() == "::1/128");
  // /0 is everything of its family.
  CHECK(parse_cidr("0.0.0.0/0")->contains(*parse_ip("203.0.113.5")));
  CHECK_FALSE(parse_cidr("0.0.0.0/0")->contains(*parse_ip("2001:db8::1")));
  CHECK(parse_cidr("::/0")->contains(*parse_ip("2001:db8::1")));

  auto v6 = parse_cidr("2001:db8:abcd::/48");
  REQUIRE(v6);
  CHECK(v6->contains(*parse_ip("2001:db8:abcd:12::1")));
  CHECK_FALSE(v6->contains(*parse_ip("2001:db8:abce::1")));
  CHECK(parse_cidr("fd00::/7")->contains(*parse_ip("fdff::1")));
  CHECK_FALSE(parse_cidr("fd00::/7")->contains(*parse_ip("fe00::1")));
  // An IPv4-mapped block is the IPv4 block.
  REQUIRE(parse_cidr("::ffff:10.0.0.0/104"));
  CHECK(parse_cidr("::ffff:10.0.0.0/104")->text() == "10.0.0.0/8");

  for (const char* bad : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8/8",
                          "10.0.0.0/ 8", "10.0.0.0/0x8", "2001:db8::/129", "::ffff:10.0.0.0/95",
                          "example.com/24", "10.0.0.0/8 ", "10.0.0.0/1000"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(parse_cidr(bad));
  }
}

TEST_CASE("http.trusted_proxies: comma-separated CIDRs, a bad one stops start-up naming the key",
          "[gateway][address][config]") {
  config::settings s;
  config::apply_environment(
    s, {{"EMPORIUM_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7 ,2001:db8::/32"}});
  CHECK(s.http.trusted_proxies
        == std::vector<std::string>{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"});
  CHECK_NOTHROW(config::validate(s));
  CHECK(config::settings{}.http.trusted_proxies.empty());

  for (const char* bad : {"10.0.0.0/33", "10.0.0.0/8,proxy.internal", "300.1.1.1"}) {
    INFO(bad);
    auto why = config_error_of(bad);
    CHECK_THAT(why, Catch::Contains("http.trusted_proxies"));
  }
  CHECK_THAT(config_error_of("10.0.0.0/8,proxy.internal"),
             Catch::Contains("[1]") && Catch::Contains("proxy.internal"));

  config::settings t;
  config::apply_toml_text(t, "[http]\ntrusted_proxies = [\"127.0.0.1\", \"fd00::/8\"]\n", "t");
  CHECK_NOTHROW(config::validate(t));
  config::apply_toml_text(t, "[http]\ntrusted_proxies = [\"127.0.0.1/40\"]\n", "t");
  CHECK_THROWS_WITH(config::validate(t), Catch::Contains("http.trusted_proxies[0]"));
}

TEST_CASE("X-Forwarded-For: ignored unless the peer is a trusted proxy", "[gateway][xff]") {
  auto trusted = blocks({"10.0.0.0/8"});
  // No proxies configured: the header means nothing, whoever sends it.
  CHECK(resolve("203.0.113.5", {"198.51.100.1"}, {}) == "203.0.113.5");
  CHECK(resolve("10.0.0.2", {"198.51.100.1"}, {}) == "10.0.0.2");
  // A peer outside the trusted blocks: its own address, whatever it claims.
  CHECK(resolve("203.0.113.5", {"198.51.100.1"}, trusted) == "203.0.113.5");
  CHECK(resolve("203.0.113.5", {"10.0.0.1"}, trusted) == "203.0.113.5");
  // From the trusted proxy: the entry it appended.
  CHECK(resolve("10.0.0.2", {"198.51.100.1"}, trusted) == "198.51.100.1");
  // ...also when the peer shows as IPv4-mapped IPv6 (a dual-stack listener).
  CHECK(resolve("::ffff:10.0.0.2", {"198.51.100.1"}, trusted) == "198.51.100.1");
  // A trusted proxy without the header: the proxy itself.
  CHECK(resolve("10.0.0.2", {}, trusted) == "10.0.0.2");
  CHECK(resolve("10.0.0.2", {""}, trusted) == "10.0.0.2");
  // The peer's text is canonicalised.
  CHECK(resolve("::ffff:203.0.113.5", {}, trusted) == "203.0.113.5");
}

TEST_CASE(
  "X-Forwarded-For: the right-most entry that is not trusted, over several entries and "
  "headers",
  "[gateway][xff]") {
  auto trusted = blocks({"10.0.0.0/8", "192.168.1.1"});
  // The client put a made-up address first; the proxy appended the real one: the real one.
  CHECK(resolve("10.0.0.2", {"1.1.1.1, 198.51.100.1"}, trusted) == "198.51.100.1");
  // Two trusted hops: walk left over them.
  CHECK(resolve("10.0.0.2", {"1.1.1.1, 198.51.100.1, 192.168.1.1"}, trusted) == "198.51.100.1");
  CHECK(resolve("10.0.0.2", {"198.51.100.1,10.9.9.9,192.168.1.1"}, trusted) == "198.51.100.1");
  // Several headers are one list, in order.
  CHECK(resolve("10.0.0.2", {"1.1.1.1", "198.51.100.1, 10.1.1.1"}, trusted) == "198.51.100.1");
  CHECK(resolve("10.0.0.2", {"198.51.100.1", "10.1.1.1"}, trusted) == "198.51.100.1");
  // Every entry trusted (an internal caller through the proxy): the left-most.
  CHECK(resolve("10.0.0.2", {"10.3.3.3, 10.2.2.2"}, trusted) == "10.3.3.3");
  // Blanks and empty elements are tolerated; ports are dropped.
  CHECK(resolve("10.0.0.2", {"  198.51.100.1 ,\t, 10.1.1.1  "}, trusted) == "198.51.100.1");
  CHECK(resolve("10.0.0.2", {"198.51.100.1:4711"}, trusted) == "198.51.100.1");
  CHECK(resolve("10.0.0.2", {"[2001:db8::5]:4711"}, trusted) == "2001:db8::5");
  CHECK(resolve("10.0.0.2", {"[2001:db8::5]"}, trusted) == "2001:db8::5");
  CHECK(resolve("10.0.0.2", {"2001:DB8::5"}, trusted) == "2001:db8::5");
  CHECK(resolve("10.0.0.2", {"::ffff:198.51.100.1"}, trusted) == "198.51.100.1");
}

TEST_CASE("X-Forwarded-For: garbage ends the walk at the last trusted hop", "[gateway][xff]") {
  auto trusted = blocks({"10.0.0.0/8"});
  // Garbage right of any untrusted entry can only come from a client (a proper proxy appends
  // an address): the closest address vouched for is the client, not a fresh identity.
  for (const char* garbage : {"unknown", "not-an-ip", "300.1.1.1", "[2001:db8::1", "[::1]x",
                              "1.2.3.4:", "_gateway", "198.51.100.1 198.51.100.2"}) {
    INFO(garbage);
    CHECK(resolve("10.0.0.2", {garbage}, trusted) == "10.0.0.2");
    CHECK(resolve("10.0.0.2", {std::string{"198.51.100.1, "} + garbage}, trusted) == "10.0.0.2");
    CHECK(resolve("10.0.0.2", {std::string{garbage} + ", 10.7.7.7"}, trusted) == "10.7.7.7");
  }
  // Garbage left of the client's entry is never reached.
  CHECK(resolve("10.0.0.2", {"unknown, 198.51.100.1"}, trusted) == "198.51.100.1");
  // An IPv6 client behind an IPv4 proxy, and the reverse.
  auto both = blocks({"10.0.0.0/8", "fd00::/8"});
  CHECK(resolve("10.0.0.2", {"2001:db8:1:2::77"}, both) == "2001:db8:1:2::77");
  CHECK(resolve("fd00::1", {"198.51.100.1, fd12::9"}, both) == "198.51.100.1");
  CHECK(resolve("fd00::1", {"198.51.100.1"}, trusted) == "fd00::1"); // not trusted here
}

TEST_CASE("address keys: IPv4 as it is, IPv6 per /64, IPv4-mapped as IPv4", "[gateway][xff]") {
  using http::gateway::address_key;
  CHECK(address_key("192.0.2.7") == "192.0.2.7");
  CHECK(address_key("::ffff:192.0.2.7") == "192.0.2.7");
  CHECK(address_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64");
  CHECK(address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
  CHECK(address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1"));
  CHECK(address_key("::1") == "::/64");
  // Whatever is not an address (a scoped link-local peer) is kept as it is.
  CHECK(address_key("fe80::1%eth0") == "fe80::1%eth0");
}

TEST_CASE("health probes: GET and HEAD of /healthz, /readyz, /metrics, nothing else", "[gateway]") {
  using http::gateway::is_health_probe;
  for (const char* path : {"/healthz", "/readyz", "/metrics"}) {
    INFO(path);
    CHECK(is_health_probe("GET", path));
    CHECK(is_health_probe("HEAD", path));
    CHECK_FALSE(is_health_probe("POST", path));
    CHECK_FALSE(is_health_probe("OPTIONS", path));
  }
  for (const char* path :
       {"/healthz/", "/healthzz", "/metrics/x", "/Healthz", "/products", "", "/readyz?x"}) {
    INFO(path);
    CHECK_FALSE(is_health_probe("GET", path));
  }
}

TEST_CASE("http.max_connections derived from the open-files limit leaves room for the rest",
          "[gateway][descriptors]") {
  using http::derived_max_connections;
  using http::reserved_descriptors;
  CHECK(reserved_descriptors(4) == 72);
  CHECK(derived_max_connections(1024, 4) == 1024 - 72);
  CHECK(derived_max_connections(1024, 16) == 1024 - 96);
  CHECK(derived_max_connections(32768, 4) == 32768 - 72);
  CHECK(derived_max_connections(1u << 20, 4) == http::max_derived_connections);
  CHECK(derived_max_connections(50, 4) == 1);
  CHECK(derived_max_connections(0, 4) == 1);
  // Unset by default: derived at start.
  CHECK_FALSE(config::settings{}.http.max_connections.has_value());
}
