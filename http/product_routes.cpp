#include "http/handler_support.hpp"
#include "http/json_codec.hpp"
#include "http/json_reader.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"

namespace emporium::http {

namespace {

/// Answers for a product, with its ETag.
response product_response(int status, const model::product& p) {
  auto res = json_response(status, codec::encode(p));
  res.header("ETag", codec::etag(p.version));
  return res;
}

bool etag_list_contains(std::string_view list, std::int64_t version) {
  // If-None-Match: "v1", W/"v2" or *
  return any_list_item(list, [version](std::string_view item) {
    auto v = codec::version_of_etag(item);
    return item == "*" || (v && *v == version);
  });
}

void get_products(app& a, const request&, const path_params&, const query_args& args,
                  responder respond) {
  model::product_query q;
  q.limit = args.limit;
  if (args.after_id)
    q.after_id = *args.after_id;
  if (args.category)
    q.category = *args.category;
  auto answer = [](result<model::product_page>& r) {
    if (!r)
      return problem(r.error());
    return json_response(200, codec::encode(*r));
  };
  a.runtime.list_products(std::move(q), on_strand<model::product_page>(respond, answer));
}

actors::product_snapshot::encoding encode_snapshot(const model::product& p) {
  return {codec::encode(p), codec::etag(p.version)};
}

response not_modified(std::string etag) {
  response res;
  res.status = 304;
  res.content_type.clear();
  res.header("ETag", std::move(etag));
  return res;
}

void get_product(app& a, const request& req, const path_params& params, const query_args&,
                 responder respond) {
  const auto& id = params["id"];
  // An active product on the node that serves it: its snapshot answers here, on this thread,
  // encoded once per version.
  if (auto snap = a.runtime.current_product(id)) {
    const auto& enc = snap->encoded(&encode_snapshot);
    auto inm = req.header("if-none-match");
    if (!inm.empty() && etag_list_contains(inm, snap->product.version))
      return respond(not_modified(enc.etag));
    auto res = json_response(200, enc.body);
    res.header("ETag", enc.etag);
    return respond(std::move(res));
  }
  std::string if_none_match{req.header("if-none-match")};
  auto answer = [if_none_match](result<model::product>& r) {
    if (!r)
      return problem(r.error());
    if (!if_none_match.empty() && etag_list_contains(if_none_match, r->version))
      return not_modified(codec::etag(r->version));
    return product_response(200, *r);
  };
  a.runtime.get_product(id, on_strand<model::product>(respond, answer));
}

void post_product(app& a, const request& req, const path_params&, const query_args&,
                  responder respond) {
  if (auto bad = require_json(req))
    return respond(std::move(*bad));
  auto draft = codec::decode_product_draft(req.body);
  if (!draft)
    return respond(problem(draft.error()));
  auto answer = [](result<model::product>& r) {
    if (!r)
      return problem(r.error().code == errc::conflict
                       ? failure{errc::conflict, "a product with this sku exists", {}}
                       : r.error());
    auto res = product_response(201, *r);
    res.header("Location", "/products/" + r->id);
    return res;
  };
  a.runtime.create_product(std::move(*draft), on_strand<model::product>(respond, answer));
}

void patch_product(app& a, const request& req, const path_params& params, const query_args&,
                   responder respond) {
  const auto& id = params["id"];
  if (auto bad = require_json(req))
    return respond(std::move(*bad));
  std::int64_t expected = 0;
  if (auto if_match = req.header("if-match"); !if_match.empty() && if_match != "*") {
    // If-Match compares strongly (RFC 9110 §13.1.1): a weak tag never matches.
    auto v = if_match.rfind("W/", 0) == 0 ? std::nullopt : codec::version_of_etag(if_match);
    if (!v)
      return respond(problem(412, "If-Match does not name a version of this product"));
    expected = *v;
  }
  auto patch = codec::decode_product_patch(req.body);
  if (!patch)
    return respond(problem(patch.error()));
  auto answer = [](result<model::product>& r) {
    if (!r)
      return problem(r.error());
    return product_response(200, *r);
  };
  a.runtime.update_product(id, std::move(*patch), expected,
                           on_strand<model::product>(respond, answer));
}

} // namespace

const std::vector<binding>& product_handlers() {
  static const std::vector<binding> list{{"listProducts", get_products},
                                         {"createProduct", post_product},
                                         {"getProduct", get_product},
                                         {"updateProduct", patch_product}};
  return list;
}

} // namespace emporium::http
