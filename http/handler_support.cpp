#include "http/handler_support.hpp"

#include "http/problem.hpp"

namespace emporium::http {

response json_response(int status, std::string body) {
  response res;
  res.status = status;
  res.body = std::move(body);
  return res;
}

std::optional<response> require_json(const request& req) {
  auto ct = req.header("content-type");
  if (ct.empty())
    return std::nullopt;
  auto semi = ct.find(';');
  auto media = ct.substr(0, semi);
  while (!media.empty() && media.back() == ' ')
    media.remove_suffix(1);
  if (media != "application/json")
    return problem(415, "the body must be application/json");
  return std::nullopt;
}

std::string_view bearer_token(const request& req) {
  auto auth = req.header("authorization");
  constexpr std::string_view scheme = "Bearer ";
  if (auth.size() <= scheme.size() || auth.substr(0, scheme.size()) != scheme)
    return {};
  return auth.substr(scheme.size());
}

} // namespace emporium::http
