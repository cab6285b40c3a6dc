#include "http/routes.hpp"

#include "http/feed_protocol.hpp"
#include "http/gateway.hpp"
#include "http/problem.hpp"
#include "http/search_codec.hpp"

#include <map>
#include <stdexcept>

namespace emporium::http {

namespace {

/// The route's access rule against the caller the gateway resolved: the 401 or 403, or nothing.
std::optional<response> check_access(const route_spec& spec, const caller& who) {
  using k = caller::kind;
  if (spec.who == access::anyone)
    return std::nullopt;
  if (who.k == k::malformed)
    return problem(401, "the Authorization header must be 'Bearer <token>'");
  if (spec.who == access::admin) {
    if (who.k == k::anonymous)
      return problem(401, "this endpoint needs the admin key as a Bearer token");
    if (who.k != k::admin)
      return problem(403, "the token does not grant admin access");
    return std::nullopt;
  }
  if (who.k == k::anonymous)
    return problem(401, "this endpoint needs a customer's or the admin's token");
  if (who.k == k::unknown)
    return problem(401, "the token is unknown or expired");
  if (spec.who == access::customer && who.k == k::admin)
    return problem(403,
                   spec.forbidden_detail ? spec.forbidden_detail : "only a customer may do this");
  return std::nullopt;
}

} // namespace

app::app(actors::runtime& rt, const config::settings& s)
  : runtime(rt),
    settings(s),
    token_key(gateway::token_key(s.auth.admin_key_hash)),
    search_key(search_codec::cursor_key(s.auth.admin_key_hash)),
    feed_connections(std::make_shared<feeds::registry>(s.feeds.max_connections_per_address)) {}

model::principal principal_of(const caller& who) {
  model::principal p;
  p.admin = who.k == caller::kind::admin;
  if (who.k == caller::kind::customer)
    p.customer_id = who.customer_id;
  return p;
}

gateway::session_verifier session_verifier(actors::runtime& rt) {
  return [&rt](std::string token, gateway::verified_fn done) {
    rt.authenticate(std::move(token), [done = std::move(done)](result<model::session_grant> s) {
      if (s)
        return done(s->customer_id, false, s->expires_at_ms);
      done({}, s.error().code == errc::unauthorized, 0);
    });
  };
}

router make_router(app& a) {
  std::map<std::string, handler_fn> fns;
  for (const auto* list : {&product_handlers(), &commerce_handlers(), &search_handlers(),
                           &ops_handlers(), &feed_handlers(), &web_handlers()})
    for (const auto& b : *list)
      if (!fns.emplace(b.operation, b.fn).second)
        throw std::logic_error(std::string{"two handlers for "} + b.operation);
  auto r = table_router([&a, &fns](const route_spec& spec) -> handler {
    auto it = fns.find(spec.operation_id);
    if (it == fns.end())
      throw std::logic_error(std::string{"no handler for "} + spec.operation_id);
    auto fn = it->second;
    fns.erase(it);
    return [&a, &spec, fn](const request& req, const path_params& p, responder respond) {
      if (auto denied = check_access(spec, req.who))
        return respond(std::move(*denied));
      if (auto missing = check_path_ids(spec, p))
        return respond(std::move(*missing));
      query_args q;
      if (auto bad = check_query(spec, req, q))
        return respond(std::move(*bad));
      fn(a, req, p, q, std::move(respond));
    };
  });
  if (!fns.empty())
    throw std::logic_error("a handler for " + fns.begin()->first + ", which the table lacks");
  return r;
}

} // namespace emporium::http
