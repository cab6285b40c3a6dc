#include "http/handler_support.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"
#include "http/search_codec.hpp"

namespace emporium::http {

namespace {

void get_search(app& a, const request& req, const path_params&, const query_args&,
                responder respond) {
  const auto& key = a.search_key;
  auto q = search_codec::decode_query(req.query, key);
  if (!q)
    return respond(problem(q.error()));
  auto query = *q;
  auto answer = [query = std::move(query), &key](result<model::search_result>& r) {
    if (!r)
      return problem(r.error());
    return json_response(200, search_codec::encode(*r, query, key));
  };
  a.runtime.search_products(std::move(*q), on_strand<model::search_result>(respond, answer));
}

} // namespace

const std::vector<binding>& search_handlers() {
  static const std::vector<binding> list{{"searchProducts", get_search}};
  return list;
}

} // namespace emporium::http
