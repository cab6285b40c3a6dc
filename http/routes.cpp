#include "http/routes.hpp"

#include "http/json_codec.hpp"
#include "http/problem.hpp"
#include "persistence/ids.hpp"

#include <nlohmann/json.hpp>

#include <charconv>

namespace emporium::http {

namespace {

response json_response(int status, std::string body) {
  response res;
  res.status = status;
  res.body = std::move(body);
  return res;
}

/// Admin-only endpoints: 401 without credentials, 403 with wrong ones.
std::optional<response> require_admin(const app& a, const request& req) {
  auto auth = req.header("authorization");
  if (auth.empty())
    return problem(401, "this endpoint needs the admin key as a Bearer token");
  constexpr std::string_view scheme = "Bearer ";
  if (auth.size() <= scheme.size() || auth.substr(0, scheme.size()) != scheme)
    return problem(401, "the Authorization header must be 'Bearer <token>'");
  auto token = auth.substr(scheme.size());
  if (!persistence::constant_time_equal(persistence::sha256_hex(token), a.admin_key_hash))
    return problem(403, "the token does not grant admin access");
  return std::nullopt;
}

/// Write bodies must be JSON; a missing Content-Type is tolerated, another one is not.
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
    auto v = codec::version_of_etag(if_match);
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

router make_router(app& a) {
  router r;
  auto bind = [&a](void (*fn)(app&, const request&, const path_params&, responder)) {
    return [&a, fn](const request& req, const path_params& p, responder respond) {
      fn(a, req, p, std::move(respond));
    };
  };
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
  r.add("GET", "/products", bind(get_products));
  r.add("POST", "/products", bind(post_product));
  r.add("GET", "/products/{id}", bind(get_product));
  r.add("PATCH", "/products/{id}", bind(patch_product));
  return r;
}

} // namespace emporium::http
