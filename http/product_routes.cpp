#include "http/handler_support.hpp"
#include "http/json_codec.hpp"
#include "http/json_reader.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"
#include "persistence/ids.hpp"

#include <charconv>

namespace emporium::http {

namespace {

/// Answers for a product, with its ETag.
response product_response(int status, const model::product& p) {
  auto res = json_response(status, codec::encode(p));
  res.header("ETag", codec::etag(p.version));
  return res;
}

std::optional<std::int32_t> parse_limit(const std::string& s) {
  std::int32_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || v < 1 || v > 100)
    return std::nullopt;
  return v;
}

bool etag_list_contains(std::string_view list, std::int64_t version) {
  // If-None-Match: "v1", W/"v2" or *
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (item == "*")
      return true;
    if (auto v = codec::version_of_etag(item); v && *v == version)
      return true;
    if (comma == std::string_view::npos)
      break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void get_products(app& a, const request& req, const path_params&, responder respond) {
  model::product_query q;
  std::vector<field_error> errs;
  for (const auto& [k, v] : req.query)
    if (k != "limit" && k != "cursor" && k != "category")
      errs.push_back({k, "is not a known query parameter"});
  if (auto* limit = req.query_one("limit")) {
    if (auto v = parse_limit(*limit))
      q.limit = *v;
    else
      errs.push_back({"limit", "must be an integer from 1 to 100"});
  }
  if (auto* cursor = req.query_one("cursor")) {
    if (auto id = codec::decode_cursor(*cursor, "prod"))
      q.after_id = *id;
    else
      errs.push_back({"cursor", "is not a cursor this server issued"});
  }
  if (auto* category = req.query_one("category")) {
    if (category->empty() || category->size() > 64)
      errs.push_back({"category", "must be 1 to 64 characters"});
    else if (has_control_chars(*category))
      errs.push_back({"category", "must not contain control characters"});
    else
      q.category = *category;
  }
  if (!errs.empty())
    return respond(problem(400, "invalid query parameters", std::move(errs)));
  a.runtime.list_products(std::move(q), [respond](result<model::product_page> r) {
    if (!r)
      return respond(problem(r.error()));
    respond(json_response(200, codec::encode(*r)));
  });
}

void get_product(app& a, const request& req, const path_params& params, responder respond) {
  const auto& id = params["id"];
  if (!persistence::is_valid_id(id, "prod"))
    return respond(problem(404, "no product has this id"));
  std::string if_none_match{req.header("if-none-match")};
  a.runtime.get_product(id, [respond, if_none_match](result<model::product> r) {
    if (!r)
      return respond(problem(r.error()));
    if (!if_none_match.empty() && etag_list_contains(if_none_match, r->version)) {
      response res;
      res.status = 304;
      res.content_type.clear();
      res.header("ETag", codec::etag(r->version));
      return respond(std::move(res));
    }
    respond(product_response(200, *r));
  });
}

void post_product(app& a, const request& req, const path_params&, responder respond) {
  if (auto denied = require_admin(a, req))
    return respond(std::move(*denied));
  if (auto bad = require_json(req))
    return respond(std::move(*bad));
  auto draft = codec::decode_product_draft(req.body);
  if (!draft)
    return respond(problem(draft.error()));
  a.runtime.create_product(std::move(*draft), [respond](result<model::product> r) {
    if (!r)
      return respond(problem(r.error().code == errc::conflict
                               ? failure{errc::conflict, "a product with this sku exists", {}}
                               : r.error()));
    auto res = product_response(201, *r);
    res.header("Location", "/products/" + r->id);
    respond(std::move(res));
  });
}

void patch_product(app& a, const request& req, const path_params& params, responder respond) {
  if (auto denied = require_admin(a, req))
    return respond(std::move(*denied));
  const auto& id = params["id"];
  if (!persistence::is_valid_id(id, "prod"))
    return respond(problem(404, "no product has this id"));
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
  a.runtime.update_product(id, std::move(*patch), expected, [respond](result<model::product> r) {
    if (!r)
      return respond(problem(r.error()));
    respond(product_response(200, *r));
  });
}

} // namespace

void add_product_routes(router& r, app& a) {
  r.add("GET", "/products", bind_handler(a, get_products));
  r.add("POST", "/products", bind_handler(a, post_product));
  r.add("GET", "/products/{id}", bind_handler(a, get_product));
  r.add("PATCH", "/products/{id}", bind_handler(a, patch_product));
}

} // namespace emporium::http
