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
  routes_.push_back(route{std::move(method), std::move(pattern), std::move(h), spec});
}

match_result router::match(std::string_view method, std::string_view path) const {
  match_result out;
  auto segs = split(path);
  for (const auto& r : routes_) {
    auto pat = split(r.pattern);
    if (pat.size() != segs.size())
      continue;
    path_params params;
    bool ok = true;
    for (std::size_t i = 0; i < pat.size() && ok; ++i) {
      if (is_param(pat[i])) {
        if (segs[i].empty())
          ok = false;
        else
          params.values.emplace_back(std::string{pat[i].substr(1, pat[i].size() - 2)},
                                     std::string{segs[i]});
      } else {
        ok = pat[i] == segs[i];
      }
    }
    if (!ok)
      continue;
    if (r.method == method || (method == "HEAD" && r.method == "GET")) {
      out.matched = &r;
      out.params = std::move(params);
      out.allowed.clear();
      return out;
    }
    if (std::find(out.allowed.begin(), out.allowed.end(), r.method) == out.allowed.end())
      out.allowed.push_back(r.method);
  }
  return out;
}

} // namespace emporium::http
