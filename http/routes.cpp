#include "http/routes.hpp"

#include "http/handler_support.hpp"
#include "http/gateway.hpp"
#include "http/problem.hpp"

namespace emporium::http {

handler bind_handler(app& a, void (*fn)(app&, const request&, const path_params&, responder)) {
  return [&a, fn](const request& req, const path_params& p, responder respond) {
    fn(a, req, p, std::move(respond));
  };
}

router make_router(app& a) {
  router r;
  r.add("GET", "/healthz", [](const request&, const path_params&, responder respond) {
    respond(json_response(200, R"({"status":"ok"})"));
  });
  r.add("GET", "/readyz", [&a](const request&, const path_params&, responder respond) {
    a.runtime.check_ready([respond](result<bool> ok) {
      if (!ok)
        return respond(problem(503, "PostgreSQL is not reachable"));
      respond(json_response(200, R"({"status":"ready"})"));
    });
  });
  add_product_routes(r, a);
  add_ops_routes(r, a);
  add_commerce_routes(r, a);
  add_search_routes(r, a);
  a.token_key = gateway::token_key(a.admin_key_hash);
  r.token_key = a.token_key;
  r.admin_key_hash = a.admin_key_hash;
  // The runtime's session cache answers at once for a live session; a miss is one lookup on a
  // blocking worker (Redis, then PostgreSQL) that the handler's own check then finds cached.
  r.verify_session = [&a](std::string token, std::function<void(std::string, bool)> done) {
    a.runtime.authenticate(std::move(token),
                           [done = std::move(done)](result<model::principal> who) {
                             if (who)
                               return done(who->customer_id, false);
                             done({}, who.error().code == errc::unauthorized);
                           });
  };
  return r;
}

} // namespace emporium::http
