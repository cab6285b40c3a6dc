#pragma once
/// Host and port syntax shared by URL parsing (parse_url, in settings.hpp) and validation.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace emporium::config::detail {

/// A URL scheme: a letter, then letters, digits, '+', '-' or '.'.
bool valid_scheme(std::string_view s);

/// Splits `host:port` or `[v6]:port`; nothing when it is not of that shape.
std::optional<std::pair<std::string, std::uint16_t>> parse_host_port(std::string_view text);

} // namespace emporium::config::detail
