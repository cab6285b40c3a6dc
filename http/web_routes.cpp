// The live page's handlers: GET / (the document) and GET /assets/{name} (its modules and
// stylesheet), answered from the files embedded at build time (web_assets.hpp).

#include "http/problem.hpp"
#include "http/routes.hpp"
#include "http/web_assets.hpp"

namespace emporium::http {

namespace {

void get_page(app&, const request& req, const path_params&, const query_args&, responder respond) {
  const auto* page = web::find(web::index_name);
  if (!page)
    return respond(problem(404, "this build has no page"));
  respond(web::serve(*page, req.header("if-none-match")));
}

void get_asset(app&, const request& req, const path_params& params, const query_args&,
               responder respond) {
  const auto& name = params["name"];
  const auto* a = web::find(name);
  // The document itself is served at / only, where its policy headers belong.
  if (!a || a->name == web::index_name)
    return respond(problem(404, "no asset has this name"));
  respond(web::serve(*a, req.header("if-none-match")));
}

} // namespace

const std::vector<binding>& web_handlers() {
  static const std::vector<binding> list{{"livePage", get_page}, {"pageAsset", get_asset}};
  return list;
}

} // namespace emporium::http
