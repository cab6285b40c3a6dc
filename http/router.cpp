#include "http/router.hpp"

#include <algorithm>
#include <stdexcept>

namespace emporium::http {

namespace {

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 1; // skip the leading '/'
  while (i <= path.size()) {
    auto j = path.find('/', i);
    if (j == std::string_view::npos)
      j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

bool is_param(std::string_view seg) {
  return seg.size() > 2 && seg.front() == '{' && seg.back() == '}';
}

} // namespace

const std::string& path_params::operator[](std::string_view name) const {
  for (const auto& [k, v] : values)
    if (k == name)
      return v;
  throw std::out_of_range("no path parameter " + std::string{name});
}

void router::add(std::string method, std::string pattern, handler h, const route_spec* spec) {
  std::vector<std::string> segments;
  for (auto seg : split(pattern))
    segments.emplace_back(seg);
  routes_.push_back(
    route{std::move(method), std::move(pattern), std::move(h), spec, std::move(segments)});
}

match_result router::match(std::string_view method, std::string_view path) const {
  // Called for every request: the path is split once, and nothing is allocated for the routes
  // that do not match.
  match_result out;
  auto segs = split(path);
  auto fits = [&segs](const route& r) {
    if (r.segments.size() != segs.size())
      return false;
    for (std::size_t i = 0; i < segs.size(); ++i) {
      const auto& pat = r.segments[i];
      if (is_param(pat) ? segs[i].empty() : pat != segs[i])
        return false;
    }
    return true;
  };
  for (const auto& r : routes_) {
    if (!fits(r))
      continue;
    if (r.method == method || (method == "HEAD" && r.method == "GET")) {
      out.matched = &r;
      out.allowed.clear();
      for (std::size_t i = 0; i < segs.size(); ++i)
        if (is_param(r.segments[i]))
          out.params.values.emplace_back(r.segments[i].substr(1, r.segments[i].size() - 2),
                                         std::string{segs[i]});
      return out;
    }
    if (std::find(out.allowed.begin(), out.allowed.end(), r.method) == out.allowed.end())
      out.allowed.push_back(r.method);
  }
  return out;
}

} // namespace emporium::http
