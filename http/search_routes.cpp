#include "http/handler_support.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"
#include "http/search_codec.hpp"

namespace emporium::http {

namespace {

void get_search(app& a, const request& req, const path_params&, responder respond) {
  auto key = search_codec::cursor_key(a.admin_key_hash);
  auto q = search_codec::decode_query(req.query, key);
  if (!q)
    return respond(problem(q.error()));
  auto query = *q;
  a.runtime.search_products(std::move(*q), [respond, query = std::move(query),
                                             key = std::move(key)](result<model::search_result> r) {
    if (!r)
      return respond(problem(r.error()));
    respond(json_response(200, search_codec::encode(*r, query, key)));
  });
}

} // namespace

void add_search_routes(router& r, app& a) {
  r.add("GET", "/search", bind_handler(a, get_search));
}

} // namespace emporium::http
