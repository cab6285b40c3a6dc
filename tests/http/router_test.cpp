#include "http/router.hpp"
#include "http/message.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

using namespace emporium::http;

namespace {

handler tagged(std::string* hit, std::string tag) {
  return [hit, tag](const request&, const path_params&, responder) { *hit = tag; };
}

router sample(std::string* hit) {
  router r;
  r.add("GET", "/products", tagged(hit, "list"));
  r.add("POST", "/products", tagged(hit, "create"));
  r.add("GET", "/products/{id}", tagged(hit, "get"));
  r.add("PATCH", "/products/{id}", tagged(hit, "patch"));
  r.add("PUT", "/carts/{id}/items/{product_id}", tagged(hit, "put-item"));
  return r;
}

} // namespace

TEST_CASE("router matches literal and parameterised paths") {
  std::string hit;
  auto r = sample(&hit);
  auto m = r.match("GET", "/products");
  REQUIRE(m.matched);
  CHECK(m.matched->pattern == "/products");
  m = r.match("POST", "/products");
  REQUIRE(m.matched);
  m.matched->handle(request{}, m.params, responder{});
  CHECK(hit == "create");

  m = r.match("GET", "/products/prod_1");
  REQUIRE(m.matched);
  CHECK(m.params["id"] == "prod_1");

  m = r.match("PUT", "/carts/cart_9/items/prod_7");
  REQUIRE(m.matched);
  CHECK(m.params["id"] == "cart_9");
  CHECK(m.params["product_id"] == "prod_7");
  CHECK_THROWS_AS(m.params["nope"], std::out_of_range);
}

TEST_CASE("router distinguishes unknown paths from unknown methods") {
  std::string hit;
  auto r = sample(&hit);
  auto m = r.match("GET", "/nothing/here");
  CHECK_FALSE(m.matched);
  CHECK(m.allowed.empty());

  m = r.match("DELETE", "/products/prod_1");
  CHECK_FALSE(m.matched);
  CHECK(m.allowed == std::vector<std::string>{"GET", "PATCH"});

  m = r.match("DELETE", "/products");
  CHECK(m.allowed == std::vector<std::string>{"GET", "POST"});
}

TEST_CASE("router rejects empty parameters, extra segments and trailing slashes") {
  std::string hit;
  auto r = sample(&hit);
  CHECK_FALSE(r.match("GET", "/products/").matched);
  CHECK_FALSE(r.match("GET", "/products/a/b").matched);
  CHECK_FALSE(r.match("GET", "/products//").matched);
  CHECK_FALSE(r.match("GET", "/product").matched);
  CHECK_FALSE(r.match("GET", "/").matched);
}

TEST_CASE("HEAD is served by the GET route") {
  std::string hit;
  auto r = sample(&hit);
  auto m = r.match("HEAD", "/products/prod_1");
  REQUIRE(m.matched);
  CHECK(m.matched->method == "GET");
}

TEST_CASE("parse_target decodes the path and the query") {
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  REQUIRE(parse_target("/products?limit=5&category=home%20goods&q=a+b&flag", path, query));
  CHECK(path == "/products");
  REQUIRE(query.size() == 4);
  CHECK(query[0] == std::pair<std::string, std::string>{"limit", "5"});
  CHECK(query[1].second == "home goods");
  CHECK(query[2].second == "a b");
  CHECK(query[3] == std::pair<std::string, std::string>{"flag", ""});

  REQUIRE(parse_target("/products/abc%2Fdef", path, query));
  CHECK(path == "/products/abc/def");
  CHECK(query.empty());
}

TEST_CASE("parse_target rejects malformed targets") {
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  CHECK_FALSE(parse_target("", path, query));
  CHECK_FALSE(parse_target("products", path, query));
  CHECK_FALSE(parse_target("http://host/products", path, query));
  CHECK_FALSE(parse_target("/products%", path, query));
  CHECK_FALSE(parse_target("/products%4", path, query));
  CHECK_FALSE(parse_target("/products%zz", path, query));
  CHECK_FALSE(parse_target("/products?limit=%G1", path, query));
}

TEST_CASE("request exposes headers and query parameters") {
  request req;
  req.headers.emplace("if-match", "\"v3\"");
  req.query = {{"category", "a"}, {"category", "b"}, {"limit", "3"}};
  CHECK(req.header("if-match") == "\"v3\"");
  CHECK(req.header("missing").empty());
  CHECK(req.query_all("category") == std::vector<std::string>{"a", "b"});
  REQUIRE(req.query_one("limit"));
  CHECK(*req.query_one("limit") == "3");
  CHECK(req.query_one("cursor") == nullptr);
}

TEST_CASE("any_list_item splits a comma-separated header value and trims blanks and tabs") {
  std::vector<std::string> seen;
  auto collect = [&seen](std::string_view item) {
    seen.emplace_back(item);
    return false;
  };
  CHECK_FALSE(any_list_item(" a ,\tb\t,, c", collect));
  CHECK(seen == std::vector<std::string>{"a", "b", "", "c"});
  seen.clear();
  CHECK_FALSE(any_list_item("", collect));
  CHECK(seen.empty());
  // It stops at the first item the predicate accepts.
  seen.clear();
  CHECK(any_list_item("keep-alive, Upgrade, x", [&seen](std::string_view item) {
    seen.emplace_back(item);
    return item == "Upgrade";
  }));
  CHECK(seen == std::vector<std::string>{"keep-alive", "Upgrade"});
}
