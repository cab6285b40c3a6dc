#pragma once
/// Text helpers shared by the configuration's registry, URL parsing and validation.

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace emporium::config::detail {

/// Why one value was rejected. The caller knows where the value came from and turns this into
/// a config_error that names the key and the origin.
class value_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

inline std::string_view trim(std::string_view v) {
  while (!v.empty() && is_space(v.front()))
    v.remove_prefix(1);
  while (!v.empty() && is_space(v.back()))
    v.remove_suffix(1);
  return v;
}

inline std::string lower(std::string_view v) {
  std::string out(v);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

inline std::string upper(std::string_view v) {
  std::string out(v);
  for (char& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

/// A value echoed in an error message: quoted, kept on one line, and not too long. Only ever
/// used for values that are not secrets.
inline std::string shown(std::string_view v) {
  constexpr std::size_t max_shown = 60;
  std::string out = "'";
  for (std::size_t i = 0; i < v.size() && i < max_shown; ++i) {
    const auto c = static_cast<unsigned char>(v[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (v.size() > max_shown)
    out += "...";
  out += "'";
  return out;
}

/// Error messages are one line whatever a library put into its text.
inline std::string single_line(std::string_view v) {
  std::string out(v);
  for (char& c : out)
    if (c == '\n' || c == '\r')
      c = ' ';
  return out;
}

inline std::string format_number(double d) {
  std::ostringstream out;
  out << d;
  return out.str();
}

} // namespace emporium::config::detail
