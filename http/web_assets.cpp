#include "http/web_assets.hpp"

#include <algorithm>

namespace emporium::http::web {

const asset* find(std::string_view name) {
  const auto& list = assets();
  auto it = std::find_if(list.begin(), list.end(),
                         [name](const asset& a) { return a.name == name; });
  return it == list.end() ? nullptr : &*it;
}

bool etag_matches(std::string_view list, std::string_view etag) {
  return any_list_item(list, [etag](std::string_view item) {
    if (item == "*")
      return true;
    if (item.substr(0, 2) == "W/")
      item.remove_prefix(2);
    return item == etag;
  });
}

response serve(const asset& a, std::string_view if_none_match) {
  response res;
  res.header("ETag", std::string{a.etag});
  res.header("Cache-Control", std::string{cache_control});
  res.header("X-Content-Type-Options", "nosniff");
  res.header("Referrer-Policy", "no-referrer");
  bool html = a.content_type.substr(0, 9) == "text/html";
  if (html)
    res.header("Content-Security-Policy", std::string{content_security_policy});
  if (!if_none_match.empty() && etag_matches(if_none_match, a.etag)) {
    res.status = 304;
    res.content_type.clear();
    return res;
  }
  res.content_type = std::string{a.content_type};
  res.body = std::string{a.bytes};
  return res;
}

} // namespace emporium::http::web
