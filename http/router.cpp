#include "http/router.hpp"

#include <algorithm>
#include <array>
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

/// A request path's segments, without allocating. No route has more than `max` segments
/// (router::add checks), so a path with more matches none.
struct path_segments {
  static constexpr std::size_t max = 16;
  std::array<std::string_view, max> seg;
  std::size_t n = 0;
  bool too_many = false;
};

path_segments split_path(std::string_view path) {
  path_segments out;
  std::size_t i = 1; // skip the leading '/'
  while (i <= path.size()) {
    auto j = path.find('/', i);
    if (j == std::string_view::npos)
      j = path.size();
    if (out.n == path_segments::max) {
      out.too_many = true;
      break;
    }
    out.seg[out.n++] = path.substr(i, j - i);
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
  if (segments.size() > path_segments::max)
    throw std::invalid_argument("route " + pattern + " has more than "
                                + std::to_string(path_segments::max) + " segments");
  routes_.push_back(
    route{std::move(method), std::move(pattern), std::move(h), spec, std::move(segments)});
}

match_result router::match(std::string_view method, std::string_view path) const {
  // Called for every request: the path is split once, and nothing is allocated but the
  // matched route's parameters (and, for a 405, the path's methods).
  match_result out;
  auto segs = split_path(path);
  if (segs.too_many)
    return out;
  auto fits = [&segs](const route& r) {
    if (r.segments.size() != segs.n)
      return false;
    for (std::size_t i = 0; i < segs.n; ++i) {
      const auto& pat = r.segments[i];
      if (is_param(pat) ? segs.seg[i].empty() : pat != segs.seg[i])
        return false;
    }
    return true;
  };
  for (const auto& r : routes_) {
    if (!fits(r) || !(r.method == method || (method == "HEAD" && r.method == "GET")))
      continue;
    out.matched = &r;
    for (std::size_t i = 0; i < segs.n; ++i)
      if (is_param(r.segments[i]))
        out.params.values.emplace_back(r.segments[i].substr(1, r.segments[i].size() - 2),
                                       std::string{segs.seg[i]});
    return out;
  }
  // No route of this method: the methods the path has, for 405 and its Allow.
  for (const auto& r : routes_)
    if (fits(r) && std::find(out.allowed.begin(), out.allowed.end(), r.method) == out.allowed.end())
      out.allowed.push_back(r.method);
  return out;
}

} // namespace emporium::http
