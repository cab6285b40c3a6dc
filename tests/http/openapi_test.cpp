// The OpenAPI document against the route table and the router built from it: the document names
// every entry of the table, the router every routed one. Plus the structural checks a schema
// validator does not make: every $ref resolves, every path template's parameters are declared,
// operation ids are unique. The document is also validated by a real OpenAPI 3.1 validator
// (tests/http/validate_openapi.mjs, run by ctest).

#include "http/openapi.hpp"
#include "actors/runtime.hpp"
#include "http/route_table.hpp"
#include "http/routes.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <regex>
#include <set>

using namespace emporium;
using json = nlohmann::json;
using http::openapi::operation;

namespace {

/// The router's table, as the server has it. The runtime starts no connection until asked.
std::set<operation> routed_operations() {
  config::settings s;
  s.postgres.pool_size = 1;
  actors::runtime rt{s};
  http::app a{rt, s};
  auto r = http::make_router(a);
  std::set<operation> out;
  for (const auto& route : r.routes())
    out.insert({route.method, route.pattern});
  rt.shutdown();
  return out;
}

const json& doc() {
  static const json d = json::parse(http::openapi::document());
  return d;
}

/// Follows a local `#/a/b/c` reference.
const json* resolve(const std::string& ref) {
  if (ref.rfind("#/", 0) != 0)
    return nullptr;
  try {
    return &doc().at(json::json_pointer(ref.substr(1)));
  } catch (const std::exception&) {
    return nullptr;
  }
}

void collect_refs(const json& j, std::vector<std::string>& out) {
  if (j.is_object()) {
    for (auto& [k, v] : j.items()) {
      if (k == "$ref" && v.is_string())
        out.push_back(v.get<std::string>());
      else
        collect_refs(v, out);
    }
  } else if (j.is_array()) {
    for (const auto& v : j)
      collect_refs(v, out);
  }
}

} // namespace

TEST_CASE("openapi: the document names the route table, the router its routed entries",
          "[openapi]") {
  const auto routed = routed_operations();
  REQUIRE(routed.size() >= 10);
  const auto documented_list = http::openapi::documented_operations();
  const std::set<operation> documented(documented_list.begin(), documented_list.end());
  std::set<operation> table, table_routed;
  for (const auto& r : http::route_table()) {
    table.insert({r.method, r.pattern});
    if (r.routed)
      table_routed.insert({r.method, r.pattern});
  }
  REQUIRE(table.size() == http::route_table().size()); // no duplicates
  CHECK(documented == table);
  CHECK(routed == table_routed);
  CHECK(table_routed == table); // every route of the contract is served
}

TEST_CASE("openapi: the contract's routes are all documented", "[openapi]") {
  const std::vector<operation> contract{{"GET", "/products"},
                                        {"GET", "/products/{id}"},
                                        {"POST", "/products"},
                                        {"PATCH", "/products/{id}"},
                                        {"GET", "/search"},
                                        {"POST", "/customers"},
                                        {"GET", "/customers/{id}"},
                                        {"GET", "/customers/{id}/orders"},
                                        {"POST", "/sessions"},
                                        {"POST", "/carts"},
                                        {"GET", "/carts/{id}"},
                                        {"PUT", "/carts/{id}/items/{product_id}"},
                                        {"POST", "/carts/{id}/checkout"},
                                        {"POST", "/orders"},
                                        {"GET", "/orders/{id}"},
                                        {"POST", "/orders/{id}/payments"},
                                        {"POST", "/orders/{id}/cancel"},
                                        {"POST", "/orders/{id}/ship"},
                                        {"POST", "/orders/{id}/deliver"},
                                        {"GET", "/orders/{id}/events"},
                                        {"GET", "/products/{id}/events"},
                                        {"GET", "/ws"},
                                        {"GET", "/healthz"},
                                        {"GET", "/readyz"},
                                        {"GET", "/metrics"},
                                        {"GET", "/cluster"},
                                        {"GET", "/cluster/owner/{id}"},
                                        {"GET", "/openapi.json"}};
  const auto documented = http::openapi::documented_operations();
  for (const auto& op : contract) {
    INFO(op.method << " " << op.path);
    CHECK(std::find(documented.begin(), documented.end(), op) != documented.end());
  }
  CHECK(documented.size() == contract.size());
}

TEST_CASE(
  "openapi: 3.1, every $ref resolves, path parameters are declared, ids are unique, "
  "probes list no 429",
  "[openapi]") {
  CHECK(doc()["openapi"] == "3.1.0");
  std::vector<std::string> refs;
  collect_refs(doc(), refs);
  REQUIRE_FALSE(refs.empty());
  for (const auto& ref : refs) {
    INFO(ref);
    CHECK(resolve(ref) != nullptr);
  }

  std::set<std::string> ids;
  const std::regex param_re{"\\{([a-z_]+)\\}"};
  for (auto& [path, item] : doc()["paths"].items()) {
    std::set<std::string> in_template;
    for (std::sregex_iterator it{path.begin(), path.end(), param_re}, end; it != end; ++it)
      in_template.insert((*it)[1].str());
    for (auto& [method, op] : item.items()) {
      INFO(method << " " << path);
      CHECK(ids.insert(op["operationId"].get<std::string>()).second);
      std::set<std::string> declared;
      for (const auto& p : op["parameters"]) {
        const json* param = p.contains("$ref") ? resolve(p["$ref"]) : &p;
        REQUIRE(param != nullptr);
        if ((*param)["in"] == "path") {
          CHECK((*param)["required"] == true);
          declared.insert((*param)["name"].get<std::string>());
        }
      }
      CHECK(declared == in_template);
      // Every operation documents the request id header; all but the probes, which the
      // limiter never sees, the rate limiter's answer and headers.
      const auto* spec = http::find_route(
        [m = method]() mutable {
          for (auto& c : m)
            c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
          return m;
        }(),
        path);
      REQUIRE(spec != nullptr);
      CHECK(op["responses"].contains("429") == !spec->probe);
      for (auto& [status, res] : op["responses"].items()) {
        const json* r = res.contains("$ref") ? resolve(res["$ref"]) : &res;
        REQUIRE(r != nullptr);
        INFO("status " << status);
        CHECK(r->contains("description"));
        CHECK((*r)["headers"].contains("X-Request-Id"));
        CHECK((*r)["headers"].contains("RateLimit-Remaining") == !spec->probe);
      }
    }
  }
}
