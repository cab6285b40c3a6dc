// End-to-end: GET /search through the real `emporium serve` binary
// against the test PostgreSQL and Redis: writes seen by search as soon as they are answered,
// bad input, signed cursors and paging. The database is shared and may hold a large catalog:
// every product here carries a word and a category no other product has.

#include "core/ids.hpp"
#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace emporium::test;
using json = nlohmann::json;

header_map admin() {
  return {{"Authorization", admin_bearer()}};
}

std::string show(const http_response& r) {
  return std::to_string(r.status) + " " + r.body;
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

/// A word of letters no other product has (ending in 'x': no stemmer rule shortens it).
std::string unique_word() {
  static std::atomic<int> counter{0};
  auto h = emporium::core::sha256_hex(
    std::to_string(::getpid()) + "/"
    + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "/"
    + std::to_string(counter.fetch_add(1)));
  std::string w = "zq";
  for (int i = 0; i < 10; ++i)
    w += static_cast<char>('a' + std::stoi(h.substr(2 * i, 2), nullptr, 16) % 26);
  return w + "x";
}

json create(http_client& c, const json& body) {
  auto r = c.request("POST", "/products", body.dump(), admin());
  INFO("POST /products " << body.dump() << " -> " << show(r));
  REQUIRE(r.status == 201);
  return r.json();
}

json product(const std::string& name, const std::string& category, std::int64_t price,
             std::int64_t stock = 5) {
  return json{{"sku", unique("srch-sku")}, {"name", name},         {"price_cents", price},
              {"currency", "USD"},         {"category", category}, {"stock", stock}};
}

json patch(http_client& c, const std::string& id, const json& body) {
  auto r = c.request("PATCH", "/products/" + id, body.dump(), admin());
  INFO("PATCH /products/" << id << " " << body.dump() << " -> " << show(r));
  REQUIRE(r.status == 200);
  return r.json();
}

json search(http_client& c, const std::string& query) {
  auto r = c.get("/search?" + query);
  INFO("GET /search?" << query << " -> " << show(r));
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type").rfind("application/json", 0) == 0);
  return r.json();
}

/// The search hit for `id`, or null.
json hit(const json& answer, const std::string& id) {
  for (const auto& item : answer.at("items"))
    if (item.at("id") == id)
      return item;
  return json();
}

/// A 400 problem+json whose errors[] names `field`.
void check_rejected(http_client& c, const std::string& query, const std::string& field) {
  auto r = c.get("/search?" + query);
  INFO("GET /search?" << query << " -> " << show(r));
  REQUIRE(r.status == 400);
  CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
  auto j = r.json();
  CHECK(j.at("status") == 400);
  CHECK(j.at("title").is_string());
  CHECK(j.at("detail").is_string());
  bool named = false;
  for (const auto& e : j.value("errors", json::array()))
    named = named || e.value("field", "") == field;
  CHECK(named);
}

} // namespace

TEST_CASE("search: a created product is found at once, and a new price is seen at once",
          "[e2e][search]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto category = unique("srch-e2e");
  for (int round = 0; round < 3; ++round) {
    auto word = unique_word();
    INFO("round " << round << ", word " << word);
    // Searched before it exists: an empty answer, which the cache may now hold.
    auto none = search(c, "q=" + word);
    CHECK(none.at("items").empty());
    CHECK(none.at("total") == 0);

    auto created = create(c, product(word + " Kettle", category, 1999));
    auto id = created.at("id").get<std::string>();
    auto found = search(c, "q=" + word);
    auto h = hit(found, id);
    REQUIRE_FALSE(h.is_null());
    CHECK(h.at("name") == word + " Kettle");
    CHECK(h.at("price_cents") == 1999);
    CHECK(h.at("currency") == "USD");
    CHECK(h.at("category") == category);
    CHECK(h.at("in_stock") == true);
    CHECK(h.at("snippet").is_string());
    CHECK(h.at("created_at") == created.at("created_at"));
    CHECK(found.at("total") == 1);
    CHECK(found.at("match") == "full_text");
    CHECK_FALSE(hit(search(c, "q=" + word + "&max_price=1999"), id).is_null());

    patch(c, id, json{{"price_cents", 2999}});
    auto repriced = search(c, "q=" + word);
    REQUIRE_FALSE(hit(repriced, id).is_null());
    CHECK(hit(repriced, id).at("price_cents") == 2999);
    CHECK(search(c, "q=" + word + "&max_price=1999").at("items").empty());
    CHECK_FALSE(hit(search(c, "q=" + word + "&min_price=2999&max_price=2999"), id).is_null());

    patch(c, id, json{{"stock", 0}});
    CHECK(search(c, "q=" + word + "&in_stock=true").at("items").empty());
    CHECK(hit(search(c, "q=" + word + "&in_stock=false"), id).at("in_stock") == false);
  }
}

TEST_CASE("search: an order that sells a product out changes its stock state in search at once",
          "[e2e][search]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto word = unique_word();
  auto id =
    create(c, product(word + " Teapot", unique("srch-e2e"), 1500, 1)).at("id").get<std::string>();
  CHECK_FALSE(hit(search(c, "q=" + word + "&in_stock=true"), id).is_null());

  auto email = unique("srch-buyer") + "@example.com";
  auto password = "pw-" + unique("secret");
  auto r = c.request("POST", "/customers",
                     json{{"email", email}, {"name", "Searcher"}, {"password", password}}.dump());
  REQUIRE(r.status == 201);
  auto l = c.request("POST", "/sessions", json{{"email", email}, {"password", password}}.dump());
  REQUIRE(l.status == 200);
  header_map buyer{{"Authorization", "Bearer " + l.json().at("token").get<std::string>()}};
  json order{{"items", json::array({{{"product_id", id}, {"quantity", 1}}})},
             {"shipping_address",
              {{"name", "Ada"},
               {"line1", "1 Way"},
               {"city", "Springfield"},
               {"postal_code", "12345"},
               {"country", "US"}}}};
  auto placed = c.request("POST", "/orders", order.dump(), buyer);
  INFO(show(placed));
  REQUIRE(placed.status == 201);
  CHECK(search(c, "q=" + word + "&in_stock=true").at("items").empty());
  CHECK(hit(search(c, "q=" + word), id).at("in_stock") == false);

  auto order_id = placed.json().at("id").get<std::string>();
  auto cancelled = c.request("POST", "/orders/" + order_id + "/cancel", "", buyer);
  INFO(show(cancelled));
  REQUIRE(cancelled.status == 200);
  CHECK(hit(search(c, "q=" + word), id).at("in_stock") == true);
}

TEST_CASE("search: bad input answers 400 problem+json naming the parameter", "[e2e][search]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  check_rejected(c, "q=", "q");
  check_rejected(c, "q=%20%20", "q");
  check_rejected(c, "q=" + std::string(1000, 'a'), "q");
  check_rejected(c, "q=lamp&min_price=500&max_price=499", "min_price");
  check_rejected(c, "q=lamp&sort=cheapest", "sort");
  check_rejected(c, "q=lamp&min_price=cheap", "min_price");
  check_rejected(c, "q=lamp&max_price=12.50", "max_price");
  check_rejected(c, "q=lamp&min_price=-5", "min_price");
  check_rejected(c, "q=lamp&in_stock=yes", "in_stock");
  check_rejected(c, "q=lamp&limit=0", "limit");
  check_rejected(c, "q=lamp&limit=101", "limit");
  check_rejected(c, "q=lamp&colour=red", "colour");
  check_rejected(c, "q=lamp&category=Not%20A%20Slug", "category");
  check_rejected(c, "q=lamp&cursor=bm90LWEtY3Vyc29y", "cursor");
  check_rejected(c, "q=%FF%FE", "q");
  // Nothing invalid reaches the database, and the server is still fine.
  CHECK(c.get("/search?q=lamp&limit=1").status == 200);
}

TEST_CASE("search: SQL metacharacters and full-text operators in q are plain text",
          "[e2e][search]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto word = unique_word();
  auto id = create(c, product(word + " Lamp", unique("srch-e2e"), 999)).at("id").get<std::string>();
  for (const std::string& q :
       std::vector<std::string>{word + "'; DROP TABLE products; --", word + " & !lamp | (x:*)",
                                "!" + word + ":*", word + " <-> \\' \"", "'", "%", "_", "\\"}) {
    auto r = c.get("/search?q=" + url_encode(q));
    INFO(q << " -> " << show(r));
    CHECK(r.status == 200);
  }
  // The operators are ignored: the words are what is searched for.
  CHECK_FALSE(hit(search(c, "q=" + url_encode(word + " & !lamp")), id).is_null());
  CHECK(c.get("/products/" + id).status == 200);
}

TEST_CASE(
  "search: every page once, in order, for every sort, with facets and total, and "
  "cursors bound to their query",
  "[e2e][search][paging]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto word = unique_word();
  auto cat_a = unique("srch-e2e-a");
  auto cat_b = unique("srch-e2e-b");
  std::vector<std::string> ids;
  const std::int64_t prices[] = {500, 1500, 1500, 2600, 800, 1500, 70000};
  for (int i = 0; i < 7; ++i)
    ids.push_back(
      create(c, product(word + " Widget " + std::to_string(i), i % 2 ? cat_a : cat_b, prices[i]))
        .at("id")
        .get<std::string>());
  for (const std::string& base :
       std::vector<std::string>{"q=" + word, "category=" + cat_a + "&category=" + cat_b}) {
    for (std::string sort : {"relevance", "price_asc", "price_desc", "newest"}) {
      auto query = base + "&sort=" + sort;
      INFO(query);
      auto all = search(c, query + "&limit=100");
      REQUIRE(all.at("items").size() == 7);
      CHECK(all.at("next_cursor").is_null());
      CHECK(all.at("total") == 7);
      CHECK(all.at("total_is_estimate") == false);
      std::vector<std::string> expected;
      for (const auto& item : all.at("items"))
        expected.push_back(item.at("id").get<std::string>());
      if (base[0] == 'q') {
        // Facets: per category and per price band, adding up to the total.
        CHECK(all.at("facets").at("category") == json{{cat_a, 3}, {cat_b, 4}});
        std::int64_t in_bands = 0;
        for (const auto& band : all.at("facets").at("price"))
          in_bands += band.at("count").get<std::int64_t>();
        CHECK(in_bands == 7);
      }
      std::vector<std::string> walked;
      std::string cursor;
      for (int page = 0; page < 10; ++page) {
        auto j = search(c, query + "&limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor));
        for (const auto& item : j.at("items"))
          walked.push_back(item.at("id").get<std::string>());
        if (j.at("next_cursor").is_null())
          break;
        cursor = j.at("next_cursor").get<std::string>();
        // The cursor pages this query only, and only as issued.
        check_rejected(c, "q=" + word + "x&sort=" + sort + "&cursor=" + cursor, "cursor");
        auto tampered = cursor;
        tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
        check_rejected(c, query + "&cursor=" + tampered, "cursor");
      }
      CHECK(walked == expected);
      CHECK(std::set<std::string>(walked.begin(), walked.end())
            == std::set<std::string>(ids.begin(), ids.end()));
    }
  }
}
