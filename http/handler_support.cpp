#include "http/handler_support.hpp"

#include "http/gateway.hpp"
#include "http/problem.hpp"
#include "persistence/ids.hpp"

namespace emporium::http {


response json_response(int status, std::string body) {
  response res;
  res.status = status;
  res.body = std::move(body);
  return res;
}

std::optional<response> require_admin(const app& a, const request& req) {
  if (req.header("authorization").empty())
    return problem(401, "this endpoint needs the admin key as a Bearer token");
  auto token = bearer_token(req);
  if (token.empty())
    return problem(401, "the Authorization header must be 'Bearer <token>'");
  if (!persistence::constant_time_equal(persistence::sha256_hex(token), a.admin_key_hash))
    return problem(403, "the token does not grant admin access");
  return std::nullopt;
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

void identify(app& a, const request& req, std::function<void(model::principal)> then,
              const responder& respond) {
  if (req.header("authorization").empty())
    return then(model::principal{});
  auto presented = bearer_token(req);
  if (presented.empty())
    return respond(problem(401, "the Authorization header must be 'Bearer <token>'"));
  if (persistence::constant_time_equal(persistence::sha256_hex(presented), a.admin_key_hash))
    return then(model::principal{true, {}});
  // Issued tokens are signed (gateway::sign_token); the database knows the part before the
  // signature. An unsigned one is looked up as it is (issued before tokens were signed).
  auto token = gateway::signed_token(presented, a.token_key).value_or(presented);
  a.runtime.authenticate(std::string{token},
                         [then = std::move(then), respond](result<model::principal> who) {
                           if (!who)
                             return respond(problem(401, "the token is unknown or expired"));
                           then(std::move(*who));
                         });
}

std::string_view bearer_token(const request& req) {
  auto auth = req.header("authorization");
  constexpr std::string_view scheme = "Bearer ";
  if (auth.size() <= scheme.size() || auth.substr(0, scheme.size()) != scheme)
    return {};
  return auth.substr(scheme.size());
}

} // namespace emporium::http
