// End-to-end: the products slice of the HTTP contract, through the real
// `emporium serve` binary against the test PostgreSQL and Redis. The database is shared with
// other tests: nothing here assumes empty tables, every SKU and category is unique.

#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace emporium::test;
using json = nlohmann::json;

header_map admin() {
  return {{"Authorization", admin_bearer()}};
}

header_map admin_with(std::string name, std::string value) {
  auto h = admin();
  h[std::move(name)] = std::move(value);
  return h;
}

/// A category slug unique to this call (lower-case letters, digits, '-').
std::string unique_category() {
  return unique("e2e-cat");
}

/// The smallest valid create body.
json minimal_product(const std::string& sku) {
  return json{
    {"sku", sku}, {"name", "E2E widget"}, {"price_cents", 1999}, {"currency", "EUR"}, {"stock", 5}};
}

bool is_rfc3339_utc(const json& v) {
  if (!v.is_string())
    return false;
  auto s = v.get<std::string>();
  return s.size() >= 20 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':'
         && s.back() == 'Z';
}

/// A problem+json answer with the given status and the four RFC 9457 members.
void check_problem(const http_response& r, int status) {
  INFO("answer: " << r.status << " " << r.body);
  REQUIRE(r.status == status);
  CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
  auto j = r.json();
  REQUIRE(j.is_object());
  CHECK(j.value("type", json()).is_string());
  CHECK(j.value("title", json()).is_string());
  CHECK(j.value("status", json()) == status);
  CHECK(j.value("detail", json()).is_string());
}

/// The problem's errors[] names `field`.
bool names_field(const http_response& r, const std::string& field) {
  auto j = json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("errors") || !j["errors"].is_array())
    return false;
  for (const auto& e : j["errors"])
    if (e.is_object() && e.value("field", "") == field && e.value("message", json()).is_string())
      return true;
  return false;
}

json create_product(http_client& c, const json& body) {
  auto r = c.request("POST", "/products", body.dump(), admin());
  INFO("POST /products " << body.dump() << " -> " << r.status << " " << r.body);
  REQUIRE(r.status == 201);
  return r.json();
}

json create_in(http_client& c, const std::string& category, int price = 1999) {
  auto body = minimal_product(unique("e2e-sku"));
  body["category"] = category;
  body["price_cents"] = price;
  return create_product(c, body);
}

http_response get_product(http_client& c, const std::string& id, const header_map& h = {}) {
  return c.request("GET", "/products/" + id, "", h);
}

/// Every product of `category`, walking the pages with `limit`.
std::vector<json> list_category(http_client& c, const std::string& category, int limit = 100) {
  std::vector<json> out;
  std::string target = "/products?limit=" + std::to_string(limit) + "&category=" + category;
  std::string cursor;
  for (int page = 0; page < 1000; ++page) {
    auto r = c.get(target + (cursor.empty() ? "" : "&cursor=" + cursor));
    INFO(r.body);
    REQUIRE(r.status == 200);
    auto j = r.json();
    for (auto& item : j.at("items"))
      out.push_back(item);
    if (j.at("next_cursor").is_null())
      return out;
    cursor = j["next_cursor"].get<std::string>();
  }
  FAIL("more than 1000 pages for category " << category);
  return out;
}

std::string etag_of(const http_response& r) {
  auto e = r.header("etag");
  REQUIRE_FALSE(e.empty());
  return e;
}

} // namespace

TEST_CASE(
  "products: POST creates with 201, Location, ETag and defaults, GET reads it back, "
  "a duplicate sku is 409",
  "[e2e][products]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto sku = unique("e2e-sku");

  auto r = c.request("POST", "/products", minimal_product(sku).dump(), admin());
  INFO(r.body);
  REQUIRE(r.status == 201);
  CHECK(r.header("content-type").rfind("application/json", 0) == 0);
  auto p = r.json();
  REQUIRE(p.is_object());
  auto id = p.value("id", "");
  CHECK(id.rfind("prod_", 0) == 0);
  CHECK(id.size() == 5 + 26);
  auto location = r.header("location");
  CHECK(location.size() >= ("/products/" + id).size());
  CHECK(location.substr(location.size() - ("/products/" + id).size()) == "/products/" + id);
  auto etag = etag_of(r);
  CHECK(etag.front() == '"');
  CHECK(etag.back() == '"');

  CHECK(p["sku"] == sku);
  CHECK(p["name"] == "E2E widget");
  CHECK(p["price_cents"] == 1999);
  CHECK(p["currency"] == "EUR");
  CHECK(p["stock"] == 5);
  CHECK(p["description"] == "");
  CHECK(p["category"] == "uncategorized");
  CHECK(p["weight_grams"] == 0);
  CHECK(p["images"] == json::array());
  CHECK(is_rfc3339_utc(p["created_at"]));
  CHECK(is_rfc3339_utc(p["updated_at"]));
  std::set<std::string> keys;
  for (auto it = p.begin(); it != p.end(); ++it)
    keys.insert(it.key());
  CHECK(keys
        == std::set<std::string>{"id", "sku", "name", "description", "price_cents", "currency",
                                 "category", "stock", "weight_grams", "images", "created_at",
                                 "updated_at"});

  auto g = get_product(c, id);
  REQUIRE(g.status == 200);
  CHECK(g.json() == p);
  CHECK(g.header("etag") == etag);
  // The Location answers the same.
  auto target = location.substr(location.find("/products/"));
  CHECK(c.get(target).json() == p);

  SECTION("every field given is kept") {
    auto full = json{{"sku", unique("e2e-sku")},
                     {"name", "Grüner Tee — 100 g"},
                     {"description", "Loose leaf, \"first flush\"."},
                     {"price_cents", 0},
                     {"currency", "JPY"},
                     {"category", unique_category()},
                     {"stock", 0},
                     {"weight_grams", 100},
                     {"images", {"https://example.com/a.jpg", "http://example.com/b.png"}}};
    auto created = create_product(c, full);
    for (auto it = full.begin(); it != full.end(); ++it)
      CHECK(created[it.key()] == it.value());
    CHECK(get_product(c, created["id"].get<std::string>()).json() == created);
  }

  SECTION("a duplicate sku is 409 problem+json and changes nothing") {
    auto dup = minimal_product(sku);
    dup["name"] = "Another name";
    dup["category"] = unique_category();
    auto d = c.request("POST", "/products", dup.dump(), admin());
    check_problem(d, 409);
    CHECK(list_category(c, dup["category"].get<std::string>()).empty());
    CHECK(get_product(c, id).json() == p);
  }
}

TEST_CASE("products: a created product reads back the same after a server restart",
          "[e2e][products][restart]") {
  auto& srv = shared_server();
  auto category = unique_category();
  json created;
  {
    http_client c{srv.host(), srv.port()};
    created = create_in(c, category, 4242);
  }
  REQUIRE(srv.restart() == 0);

  http_client c{srv.host(), srv.port()};
  auto r = get_product(c, created["id"].get<std::string>());
  INFO(r.body);
  REQUIRE(r.status == 200);
  CHECK(r.json() == created);
  auto listed = list_category(c, category);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0] == created);
}

TEST_CASE(
  "products: PATCH honours If-Match, and no read after an answered PATCH returns the "
  "old price",
  "[e2e][products][cache]") {
  auto& srv = shared_server();
  http_client a{srv.host(), srv.port()};
  auto created = create_in(a, unique_category(), 1000);
  std::string id = created["id"];
  auto etag0 = etag_of(get_product(a, id));

  // With the current ETag: 200 and a new ETag.
  auto r = a.request("PATCH", "/products/" + id, R"({"price_cents":1100})",
                     admin_with("If-Match", etag0));
  INFO(r.body);
  REQUIRE(r.status == 200);
  auto etag1 = etag_of(r);
  CHECK(etag1 != etag0);
  auto patched = r.json();
  CHECK(patched["price_cents"] == 1100);
  CHECK(patched["id"] == id);
  CHECK(patched["sku"] == created["sku"]);
  CHECK(patched["name"] == created["name"]);
  CHECK(patched["created_at"] == created["created_at"]);
  CHECK(patched["updated_at"].get<std::string>() >= created["updated_at"].get<std::string>());

  SECTION("a stale If-Match is 412 and changes nothing") {
    auto stale = a.request("PATCH", "/products/" + id, R"({"price_cents":9999})",
                           admin_with("If-Match", etag0));
    check_problem(stale, 412);
    auto now = get_product(a, id);
    CHECK(now.json()["price_cents"] == 1100);
    CHECK(now.header("etag") == etag1);
  }

  SECTION("If-Match * and no If-Match both apply the change") {
    auto star = a.request("PATCH", "/products/" + id, R"({"stock":7})",
                          admin_with("If-Match", "*"));
    REQUIRE(star.status == 200);
    CHECK(star.json()["stock"] == 7);
    auto none = a.request("PATCH", "/products/" + id, R"({"stock":8})", admin());
    REQUIRE(none.status == 200);
    CHECK(none.json()["stock"] == 8);
    CHECK(none.json()["price_cents"] == 1100);
  }

  SECTION("reads after each answered PATCH see it: same connection, a fresh one, a restart") {
    auto etag = etag1;
    for (int i = 1; i <= 15; ++i) {
      const int price = 2000 + i;
      auto p = a.request("PATCH", "/products/" + id, json{{"price_cents", price}}.dump(),
                         admin_with("If-Match", etag));
      INFO("round " << i << ": " << p.body);
      REQUIRE(p.status == 200);
      etag = etag_of(p);
      auto same = get_product(a, id);
      REQUIRE(same.status == 200);
      CHECK(same.json()["price_cents"] == price);
      CHECK(same.header("etag") == etag);
      auto fresh = http_request(srv.host(), srv.port(), "GET", "/products/" + id);
      REQUIRE(fresh.status == 200);
      CHECK(fresh.json()["price_cents"] == price);
      CHECK(fresh.header("etag") == etag);
      // The listing reads PostgreSQL directly: it must agree too.
      auto listed = list_category(a, created["category"].get<std::string>());
      REQUIRE(listed.size() == 1);
      CHECK(listed[0]["price_cents"] == price);
    }
    // After a restart the product re-activates from Redis or PostgreSQL: still the last price.
    REQUIRE(srv.restart() == 0);
    http_client b{srv.host(), srv.port()};
    auto after = get_product(b, id);
    REQUIRE(after.status == 200);
    CHECK(after.json()["price_cents"] == 2015);
    CHECK(after.header("etag") == etag);
    // The connection kept from before the restart was closed by it; the client reconnects.
    auto via_old = get_product(a, id);
    REQUIRE(via_old.status == 200);
    CHECK(via_old.json()["price_cents"] == 2015);
    CHECK(a.connections_opened() == 2);
    // And a PATCH right after the restart is seen at once as well.
    auto p = b.request("PATCH", "/products/" + id, R"({"price_cents":3000})",
                       admin_with("If-Match", etag));
    REQUIRE(p.status == 200);
    CHECK(http_request(srv.host(), srv.port(), "GET", "/products/" + id).json()["price_cents"]
          == 3000);
  }

  SECTION("PATCH of an unknown product is 404") {
    auto u = a.request("PATCH", "/products/prod_00000000000000000000000000", R"({"price_cents":1})",
                       admin());
    check_problem(u, 404);
  }
}

TEST_CASE("products: If-None-Match with the current ETag answers 304 without a body",
          "[e2e][products]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto created = create_in(c, unique_category());
  std::string id = created["id"];
  auto first = get_product(c, id);
  auto etag = etag_of(first);

  auto r = get_product(c, id, {{"If-None-Match", etag}});
  CHECK(r.status == 304);
  CHECK(r.body.empty());
  CHECK(r.header("etag") == etag);
  CHECK((r.header("content-length").empty() || r.header("content-length") == "0"));
  // The connection is still in step: the next answer is the full product.
  auto again = get_product(c, id);
  REQUIRE(again.status == 200);
  CHECK(again.json() == created);

  // A list holding it, and the weak form, match too; another version does not.
  CHECK(get_product(c, id, {{"If-None-Match", "\"v999999\", " + etag}}).status == 304);
  CHECK(get_product(c, id, {{"If-None-Match", "W/" + etag}}).status == 304);
  auto other = get_product(c, id, {{"If-None-Match", "\"v999999\""}});
  CHECK(other.status == 200);
  CHECK(other.json() == created);

  // After a change the old ETag no longer matches.
  auto p = c.request("PATCH", "/products/" + id, R"({"stock":1})", admin());
  REQUIRE(p.status == 200);
  auto changed = get_product(c, id, {{"If-None-Match", etag}});
  CHECK(changed.status == 200);
  CHECK(changed.json()["stock"] == 1);
}

TEST_CASE("products: POST and PATCH need the admin key: 401 without, 403 with a wrong one",
          "[e2e][products][auth]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto category = unique_category();
  auto body = minimal_product(unique("e2e-sku"));
  body["category"] = category;

  auto none = c.request("POST", "/products", body.dump());
  check_problem(none, 401);
  auto basic = c.request("POST", "/products", body.dump(),
                         {{"Authorization", "Basic YWRtaW46eA=="}});
  check_problem(basic, 401);
  auto wrong = c.request("POST", "/products", body.dump(),
                         {{"Authorization", std::string{"Bearer "} + test_admin_key + "x"}});
  check_problem(wrong, 403);
  CHECK(list_category(c, category).empty());
  // The sku is still free.
  auto created = create_product(c, body);
  std::string id = created["id"];

  auto p_none = c.request("PATCH", "/products/" + id, R"({"price_cents":1})");
  check_problem(p_none, 401);
  auto p_wrong = c.request("PATCH", "/products/" + id, R"({"price_cents":1})",
                           {{"Authorization", "Bearer not-the-admin-key-at-all"}});
  check_problem(p_wrong, 403);
  auto now = get_product(c, id);
  REQUIRE(now.status == 200);
  CHECK(now.json() == created);
}

TEST_CASE("products: invalid input answers 400 problem+json naming the field, and writes nothing",
          "[e2e][products][validation]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};

  struct invalid_case {
    std::string what;
    std::string field; ///< "" when the body cannot name a field (not JSON at all)
    std::function<std::string(json)> make; ///< from a valid body to the invalid one
  };
  auto set = [](const char* key, json value) {
    return [key, value](json b) {
      b[key] = value;
      return b.dump();
    };
  };
  auto drop = [](const char* key) {
    return [key](json b) {
      b.erase(key);
      return b.dump();
    };
  };
  const std::vector<invalid_case> cases{
    {"malformed JSON", "", [](json b) { return b.dump().substr(0, b.dump().size() - 5); }},
    {"not an object", "", [](json) { return std::string{R"(["sku","name"])"}; }},
    {"price_cents as a string", "price_cents", set("price_cents", "1999")},
    {"price_cents as a float", "price_cents", set("price_cents", 19.99)},
    {"stock 1.5", "stock", set("stock", 1.5)},
    {"name as a number", "name", set("name", 42)},
    {"missing sku", "sku", drop("sku")},
    {"missing name", "name", drop("name")},
    {"missing price_cents", "price_cents", drop("price_cents")},
    {"missing currency", "currency", drop("currency")},
    {"missing stock", "stock", drop("stock")},
    {"unknown field", "colour", set("colour", "red")},
    {"negative price", "price_cents", set("price_cents", -1)},
    {"absurd price 1e12", "price_cents",
     [](json b) {
       auto s = b.dump();
       auto pos = s.find("\"price_cents\":1999");
       return s.replace(pos, 18, "\"price_cents\":1000000000000");
     }},
    {"price beyond int64", "price_cents",
     [](json b) {
       auto s = b.dump();
       auto pos = s.find("\"price_cents\":1999");
       return s.replace(pos, 18, "\"price_cents\":99999999999999999999999");
     }},
    {"negative stock", "stock", set("stock", -3)},
    {"empty name", "name", set("name", "")},
    {"blank name", "name", set("name", "   ")},
    {"10 KB name", "name", set("name", std::string(10 * 1024, 'n'))},
    // Not valid JSON (RFC 8259 requires UTF-8): like malformed JSON, no field can be named.
    {"invalid UTF-8 in name", "",
     [](json b) {
       auto s = b.dump();
       auto pos = s.find("E2E widget");
       return s.replace(pos, 10, "E2E \xff\xfe\xc3 widget");
     }},
    {"lower-case currency", "currency", set("currency", "eur")},
    {"four-letter currency", "currency", set("currency", "EURO")},
    {"sku with a space", "sku", set("sku", "has space")},
    {"upper-case category", "category", set("category", "Books")},
    {"images not an array", "images", set("images", "https://example.com/a.jpg")},
  };

  for (const auto& k : cases) {
    auto category = unique_category();
    auto valid = minimal_product(unique("e2e-sku"));
    valid["category"] = category;
    auto body = k.make(valid);
    auto r = c.request("POST", "/products", body, admin());
    INFO("case: " << k.what << "; body (first 200 bytes): " << body.substr(0, 200)
                  << "; answer: " << r.status << " " << r.body.substr(0, 500));
    check_problem(r, 400);
    if (!k.field.empty())
      CHECK(names_field(r, k.field));
    // Nothing was written: the valid body with the same sku and category is accepted now, and
    // it is the only product of its category.
    auto again = c.request("POST", "/products", valid.dump(), admin());
    CHECK(again.status == 201);
    CHECK(list_category(c, category).size() == 1);
  }

  SECTION("PATCH: {} and invalid fields are 400, and the product is unchanged") {
    auto created = create_in(c, unique_category());
    std::string id = created["id"];
    auto etag = etag_of(get_product(c, id));
    struct patch_case {
      std::string body;
      std::string field;
    };
    const std::vector<patch_case> patches{
      {"{}", ""},
      {"{\"price_cents\":", ""},
      {R"({"price_cents":-5})", "price_cents"},
      {R"({"price_cents":"5"})", "price_cents"},
      {R"({"price_cents":1000000000000})", "price_cents"},
      {R"({"stock":1.5})", "stock"},
      {R"({"stock":-1})", "stock"},
      {R"({"name":""})", "name"},
      {R"({"currency":"usd"})", "currency"},
      {R"({"colour":"red"})", "colour"},
      {R"({"price_cents":5,"colour":"red"})", "colour"},
    };
    for (const auto& p : patches) {
      auto r = c.request("PATCH", "/products/" + id, p.body, admin_with("If-Match", etag));
      INFO("PATCH " << p.body << " -> " << r.status << " " << r.body);
      check_problem(r, 400);
      if (!p.field.empty())
        CHECK(names_field(r, p.field));
    }
    auto now = get_product(c, id);
    CHECK(now.json() == created);
    CHECK(now.header("etag") == etag);
  }
}

TEST_CASE("products: GET /products rejects a limit outside 1..100 and a tampered cursor",
          "[e2e][products][paging]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto category = unique_category();
  for (int i = 0; i < 3; ++i)
    create_in(c, category);

  for (std::string limit : {"0", "101", "-1", "1000", "abc", "", "1.5", "99999999999"}) {
    auto r = c.get("/products?limit=" + limit);
    INFO("limit=" << limit << " -> " << r.body);
    check_problem(r, 400);
    CHECK(names_field(r, "limit"));
  }
  for (std::string limit : {"1", "100"}) {
    auto r = c.get("/products?limit=" + limit + "&category=" + category);
    INFO("limit=" << limit << " -> " << r.body);
    REQUIRE(r.status == 200);
    CHECK(r.json()["items"].size() == std::min<std::size_t>(3, std::stoul(limit)));
  }
  // The default page is 20 at most.
  auto dflt = c.get("/products");
  REQUIRE(dflt.status == 200);
  CHECK(dflt.json()["items"].size() <= 20);
  CHECK(dflt.json()["items"].size() >= 3);

  auto first = c.get("/products?limit=1&category=" + category);
  REQUIRE(first.status == 200);
  auto cursor = first.json()["next_cursor"].get<std::string>();
  REQUIRE(cursor.size() > 4);
  // It works untouched.
  auto second = c.get("/products?limit=1&category=" + category + "&cursor=" + cursor);
  REQUIRE(second.status == 200);
  REQUIRE(second.json()["items"].size() == 1);
  CHECK(second.json()["items"][0]["id"] > first.json()["items"][0]["id"]);

  std::string flipped_first = cursor;
  flipped_first[0] = flipped_first[0] == 'Z' ? 'Y' : 'Z';
  std::string flipped_last = cursor;
  flipped_last.back() = flipped_last.back() == '-' ? '_' : '-';
  const std::vector<std::string> tampered{
    flipped_first,         cursor.substr(0, cursor.size() / 2),
    cursor + "AAAA",       cursor + "%21",
    "not-a-cursor",        "%00%01%02",
    std::string(300, 'A'),
  };
  for (const auto& t : tampered) {
    auto r = c.get("/products?limit=1&category=" + category + "&cursor=" + t);
    INFO("cursor=" << t << " -> " << r.body);
    check_problem(r, 400);
    CHECK(names_field(r, "cursor"));
  }
  // An unknown query parameter is rejected too.
  check_problem(c.get("/products?limt=5"), 400);
}

namespace {

/// One walk over GET /products pages: every id in order, and how many pages it took.
struct walk_result {
  std::vector<std::string> ids;
  int pages = 0;
};

/// Walks `base` (a /products target with its query) page by page, calling `between` after each
/// page that is not the last. Fails at once on an id not strictly greater than the one before.
walk_result walk(http_client& c, const std::string& base, std::size_t limit,
                 const std::function<void()>& between) {
  walk_result out;
  std::string cursor;
  for (;;) {
    REQUIRE(out.pages < 20'000); // a bound: the walk must end
    auto r = c.get(base + (cursor.empty() ? std::string{} : "&cursor=" + cursor));
    INFO("page " << out.pages << ": " << r.body.substr(0, 300));
    REQUIRE(r.status == 200);
    auto j = r.json();
    const auto& items = j.at("items");
    REQUIRE(items.size() <= limit);
    for (const auto& item : items) {
      auto id = item.at("id").get<std::string>();
      if (!out.ids.empty() && !(out.ids.back() < id))
        FAIL("out of order or repeated on page " << out.pages << ": " << out.ids.back() << " then "
                                                 << id);
      out.ids.push_back(id);
    }
    ++out.pages;
    if (j.at("next_cursor").is_null())
      return out;
    CHECK(items.size() == limit); // only the last page may be short
    cursor = j["next_cursor"].get<std::string>();
    between();
  }
}

} // namespace

TEST_CASE(
  "products: walking every page with limit=100 sees each product once, in ascending id "
  "order, while products are being created",
  "[e2e][products][paging]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port(), std::chrono::milliseconds(30'000)};
  http_client writer{srv.host(), srv.port()};
  auto category = unique_category();
  // More than a page of them, so that the walk crosses page boundaries whatever the table holds.
  std::set<std::string> before;
  for (int i = 0; i < 130; ++i)
    before.insert(create_in(writer, category)["id"].get<std::string>());

  SECTION("the whole catalog") {
    std::set<std::string> during;
    int page = 0;
    auto w = walk(c, "/products?limit=100", 100, [&] {
      // Products appear while the walk is under way (on another connection).
      if (++page <= 3 || page % 50 == 0)
        during.insert(create_in(writer, category)["id"].get<std::string>());
    });
    INFO("walked " << w.pages << " pages, " << w.ids.size() << " products");
    CHECK(w.pages >= 2);
    std::set<std::string> seen(w.ids.begin(), w.ids.end());
    CHECK(seen.size() == w.ids.size()); // no duplicates (also implied by the strict order)
    std::size_t missing_before = 0;
    for (const auto& id : before)
      missing_before += seen.count(id) == 0;
    CHECK(missing_before == 0);
    // Created after the walk began, hence newer than any id the cursor had reached: seen too.
    std::size_t missing_during = 0;
    for (const auto& id : during)
      missing_during += seen.count(id) == 0;
    CHECK(missing_during == 0);
    CHECK(during.size() >= 1);
  }

  SECTION("one category, with a product created after every page") {
    std::vector<std::string> during;
    auto w = walk(c, "/products?limit=50&category=" + category, 50, [&] {
      if (during.size() < 6)
        during.push_back(create_in(writer, category)["id"].get<std::string>());
    });
    std::vector<std::string> expected(before.begin(), before.end());
    expected.insert(expected.end(), during.begin(), during.end());
    CHECK(w.ids == expected);
  }
}

TEST_CASE("products: the category filter returns that category only", "[e2e][products][paging]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto cat_a = unique_category();
  auto cat_b = unique_category();
  std::vector<std::string> a_ids;
  for (int i = 0; i < 3; ++i) {
    a_ids.push_back(create_in(c, cat_a)["id"].get<std::string>());
    create_in(c, cat_b);
  }
  create_in(c, cat_b);

  auto a = list_category(c, cat_a, 2);
  REQUIRE(a.size() == 3);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i]["category"] == cat_a);
    CHECK(a[i]["id"] == a_ids[i]);
  }
  auto b = list_category(c, cat_b, 100);
  CHECK(b.size() == 4);
  for (const auto& p : b)
    CHECK(p["category"] == cat_b);

  auto none = c.get("/products?category=" + unique_category());
  REQUIRE(none.status == 200);
  CHECK(none.json()["items"] == json::array());
  CHECK(none.json()["next_cursor"].is_null());
  check_problem(c.get("/products?category=" + std::string(65, 'a')), 400);
  check_problem(c.get("/products?category="), 400);
}

TEST_CASE("products: unknown and malformed ids, unknown routes and wrong methods",
          "[e2e][products][routing]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};

  for (std::string id : {"prod_00000000000000000000000000", "prod_7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
                         "prod_01ARZ3NDEKTSV4RRFFQ69G5FAV"}) {
    INFO(id);
    check_problem(get_product(c, id), 404);
  }
  for (std::string id : {"not-an-id", "prod_123", "cust_01ARZ3NDEKTSV4RRFFQ69G5FAV",
                         "prod_01arz3ndektsv4rrffq69g5fav", "prod_81ARZ3NDEKTSV4RRFFQ69G5FAV",
                         "prod_01ARZ3NDEKTSV4RRFFQ69G5FAVX", "%00", "..%2F..%2Fetc"}) {
    INFO(id);
    check_problem(get_product(c, id), 404);
  }
  for (std::string target : {"/nope", "/products/x/y", "/productz", "/assets", "/healthz/x"}) {
    INFO(target);
    check_problem(c.get(target), 404);
  }

  auto created = create_in(c, unique_category());
  std::string id = created["id"];
  auto del = c.request("DELETE", "/products/" + id, "", admin());
  check_problem(del, 405);
  auto allow = del.header("allow");
  CHECK(allow.find("GET") != std::string::npos);
  CHECK(allow.find("PATCH") != std::string::npos);
  auto put = c.request("PUT", "/products", "{}", admin());
  check_problem(put, 405);
  CHECK(put.header("allow").find("GET") != std::string::npos);
  CHECK(put.header("allow").find("POST") != std::string::npos);
  auto post_health = c.request("POST", "/healthz", "{}");
  check_problem(post_health, 405);
  CHECK(post_health.header("allow").find("GET") != std::string::npos);
  // Still there after all that.
  CHECK(get_product(c, id).json() == created);
}

TEST_CASE("products: /healthz and /readyz answer 200", "[e2e][health]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto h = c.get("/healthz");
  REQUIRE(h.status == 200);
  CHECK(h.json().is_object());
  auto r = c.get("/readyz");
  REQUIRE(r.status == 200);
  CHECK(r.json().is_object());
}
