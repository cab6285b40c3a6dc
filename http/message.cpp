#include "http/message.hpp"

namespace emporium::http {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

bool percent_decode(std::string_view in, std::string& out, bool plus_is_space) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size())
        return false;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return true;
}

} // namespace

std::string_view request::header(std::string_view name) const {
  auto it = headers.find(std::string{name});
  return it == headers.end() ? std::string_view{} : std::string_view{it->second};
}

std::vector<std::string> request::query_all(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : query)
    if (k == name)
      out.push_back(v);
  return out;
}

const std::string* request::query_one(std::string_view name) const {
  for (const auto& [k, v] : query)
    if (k == name)
      return &v;
  return nullptr;
}

bool parse_target(std::string_view target, std::string& path,
                  std::vector<std::pair<std::string, std::string>>& query) {
  auto q = target.find('?');
  auto raw_path = target.substr(0, q);
  if (raw_path.empty() || raw_path.front() != '/')
    return false;
  if (!percent_decode(raw_path, path, false))
    return false;
  query.clear();
  if (q == std::string_view::npos)
    return true;
  auto rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    auto pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (pair.empty())
      continue;
    auto eq = pair.find('=');
    std::string k, v;
    if (!percent_decode(pair.substr(0, eq), k, true))
      return false;
    if (eq != std::string_view::npos && !percent_decode(pair.substr(eq + 1), v, true))
      return false;
    query.emplace_back(std::move(k), std::move(v));
  }
  return true;
}

} // namespace emporium::http
