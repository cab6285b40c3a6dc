#include "config/url.hpp"
#include "config/settings.hpp"
#include "config/text.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace emporium::config {
namespace {

using detail::lower;
using detail::shown;
using detail::valid_scheme;

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out += v[i];
      continue;
    }
    if (i + 2 >= v.size())
      return std::nullopt;
    const int hi = hex_value(v[i + 1]);
    const int lo = hex_value(v[i + 2]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::uint16_t default_port(std::string_view scheme) {
  if (scheme == "postgresql" || scheme == "postgres")
    return 5432;
  if (scheme == "redis")
    return 6379;
  return 0;
}

bool valid_host_name(std::string_view h) {
  return !h.empty() && std::all_of(h.begin(), h.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

/// An IPv6 literal without its brackets, with an optional zone (`fe80::1%eth0`).
bool valid_ipv6_literal(std::string_view h) {
  const auto percent = h.find('%');
  const std::string_view address = h.substr(0, percent);
  const std::string_view zone = percent == std::string_view::npos ? std::string_view()
                                                                  : h.substr(percent + 1);
  if (percent != std::string_view::npos && !valid_host_name(zone))
    return false;
  return address.find(':') != std::string_view::npos
         && std::all_of(address.begin(), address.end(), [](char c) {
              return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
            });
}

/// A port in 1..65535 written as plain digits, else nothing.
std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5
      || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  unsigned value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  if (value == 0 || value > 65535)
    return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

} // namespace

namespace detail {

bool valid_scheme(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s.front())))
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
  });
}

/// Splits `host:port` or `[v6]:port`; nothing when it is not of that shape.
std::optional<std::pair<std::string, std::uint16_t>> parse_host_port(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos)
    return std::nullopt;
  std::string_view host = text.substr(0, colon);
  const auto port = parse_port(text.substr(colon + 1));
  if (!port)
    return std::nullopt;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (!valid_ipv6_literal(host))
      return std::nullopt;
  } else if (!valid_host_name(host)) {
    return std::nullopt;
  }
  return std::make_pair(std::string(host), *port);
}

} // namespace detail

std::string redact_url(const std::string& url) {
  std::string out = url;
  // user:password@ — the last '@' after the scheme ends the user info. Taking the last one over-
  // redacts when an '@' appears later in the query, which is the safe side to err on.
  const auto sep = out.find("://");
  const std::size_t start = sep == std::string::npos ? 0 : sep + 3;
  const auto at = out.rfind('@');
  if (at != std::string::npos && at >= start) {
    const auto colon = out.find(':', start);
    if (colon != std::string::npos && colon < at)
      out.replace(colon + 1, at - colon - 1, "***");
  }
  // password=... as a query parameter (libpq accepts it) or in a key=value connection string.
  static constexpr std::string_view marker = "password=";
  std::size_t from = 0;
  while (true) {
    const std::string low = lower(out);
    const auto pos = low.find(marker, from);
    if (pos == std::string::npos)
      break;
    const auto value_begin = pos + marker.size();
    auto value_end = out.find_first_of("& \t", value_begin);
    if (value_end == std::string::npos)
      value_end = out.size();
    out.replace(value_begin, value_end - value_begin, "***");
    from = value_begin + 3;
  }
  return out;
}

url_parts parse_url(const std::string& key, const std::string& url,
                    const std::vector<std::string>& schemes) {
  std::string expected;
  for (const auto& s : schemes)
    expected += (expected.empty() ? "" : " or ") + s + "://";
  if (expected.empty())
    expected = "scheme://";

  const auto sep = url.find("://");
  // Without a scheme the text may be a key=value connection string holding a password: not echoed.
  if (sep == std::string::npos || !valid_scheme(std::string_view(url).substr(0, sep)))
    throw config_error("config: " + key + ": not a URL, expected " + expected
                       + "[user[:password]@]host[:port][/path][?query]");

  const std::string redacted = redact_url(url);
  auto fail = [&](const std::string& why) {
    std::string hint;
    // An unencoded '/' or '?' in a password cuts the authority short; say so, without echoing.
    const auto authority_end = url.find_first_of("/?", sep + 3);
    if (authority_end != std::string::npos && url.find('@', authority_end) != std::string::npos)
      hint =
        " (characters such as '/', '?', '@' and ':' in a user or password must be percent-encoded)";
    return config_error("config: " + key + ": " + why + " in URL " + shown(redacted) + hint);
  };

  url_parts p;
  p.scheme = lower(std::string_view(url).substr(0, sep));
  if (!schemes.empty() && std::find(schemes.begin(), schemes.end(), p.scheme) == schemes.end())
    throw fail("scheme '" + p.scheme + "' is not " + expected);

  std::string_view rest = std::string_view(url).substr(sep + 3);
  const auto authority_end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view tail = authority_end == std::string_view::npos ? std::string_view()
                                                                  : rest.substr(authority_end);

  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    const auto colon = userinfo.find(':');
    auto user = percent_decode(userinfo.substr(0, colon));
    if (!user)
      throw fail("bad percent-encoding in the user name");
    p.user = std::move(*user);
    if (colon != std::string_view::npos) {
      auto password = percent_decode(userinfo.substr(colon + 1));
      if (!password)
        throw fail("bad percent-encoding in the password");
      p.password = std::move(*password);
    }
  }

  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      throw fail("unterminated '[' in the host");
    const std::string_view host = authority.substr(1, close - 1);
    if (!valid_ipv6_literal(host))
      throw fail("bad IPv6 host");
    p.host = std::string(host);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        throw fail("unexpected text after the host");
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    p.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
    if (p.host.empty())
      throw fail("empty host");
    if (!valid_host_name(p.host))
      throw fail("bad host");
  }

  if (has_port) {
    const auto port = parse_port(port_text);
    if (!port)
      throw fail("bad port (expected 1..65535)");
    p.port = *port;
  } else {
    p.port = default_port(p.scheme);
  }

  if (!tail.empty() && tail.front() == '/') {
    tail.remove_prefix(1);
    const auto q = tail.find('?');
    p.path = std::string(tail.substr(0, q));
    tail = q == std::string_view::npos ? std::string_view() : tail.substr(q);
  }
  if (!tail.empty() && tail.front() == '?')
    p.query = std::string(tail.substr(1));
  return p;
}

} // namespace emporium::config
