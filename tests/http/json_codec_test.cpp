#include "http/json_codec.hpp"
#include "core/ids.hpp"
#include "http/problem.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>

using namespace emporium;
using namespace emporium::http;
using nlohmann::json;

namespace {

json valid_draft() {
  return json{{"sku", "LAMP-1"},
              {"name", "Desk Lamp"},
              {"price_cents", 2599},
              {"currency", "EUR"},
              {"stock", 3}};
}

/// The field errors of decoding `body` as a draft (empty when it decodes).
std::vector<std::string> draft_error_fields(const std::string& body) {
  auto r = codec::decode_product_draft(body);
  std::vector<std::string> out;
  if (!r)
    for (const auto& e : r.error().errors)
      out.push_back(e.field);
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

} // namespace

TEST_CASE("a valid draft decodes with its defaults") {
  auto r = codec::decode_product_draft(valid_draft().dump());
  REQUIRE(r.ok());
  CHECK(r->sku == "LAMP-1");
  CHECK(r->price_cents == 2599);
  CHECK(r->category == "uncategorized");
  CHECK(r->description.empty());
  CHECK(r->weight_grams == 0);
  CHECK(r->images.empty());

  auto full = valid_draft();
  full["description"] = "Bright";
  full["category"] = "home";
  full["weight_grams"] = 800;
  full["images"] = {"https://img.example/1.jpg"};
  auto r2 = codec::decode_product_draft(full.dump());
  REQUIRE(r2.ok());
  CHECK(r2->category == "home");
  CHECK(r2->images.size() == 1);
}

TEST_CASE("malformed bodies are rejected as a whole") {
  for (std::string body : {"", "{", "[1,2]", "\"text\"", "null", "{\"sku\":}", "{} extra"}) {
    auto r = codec::decode_product_draft(body);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::invalid_input);
  }
  // Invalid UTF-8 inside a string.
  auto bad = std::string{
    "{\"sku\":\"a\",\"name\":\"\xff\xfe\",\"price_cents\":1,\"currency\":\"USD\",\"stock\":1}"};
  auto r = codec::decode_product_draft(bad);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == errc::invalid_input);
}

TEST_CASE("each missing required field is named") {
  for (std::string field : {"sku", "name", "price_cents", "currency", "stock"}) {
    auto j = valid_draft();
    j.erase(field);
    CAPTURE(field);
    CHECK(draft_error_fields(j.dump()) == std::vector<std::string>{field});
  }
}

TEST_CASE("wrong types, ranges and formats are named per field") {
  struct bad_case {
    const char* field;
    json value;
  };
  std::vector<bad_case> cases{
    {"sku", 12},
    {"sku", "has space"},
    {"sku", std::string(65, 'A')},
    {"name", ""},
    {"name", "   "},
    {"name", std::string(10 * 1024, 'n')},
    {"name", json::array()},
    {"description", std::string(10'001, 'd')},
    {"price_cents", "12"},
    {"price_cents", 12.5},
    {"price_cents", -1},
    {"price_cents", 1'000'000'000'000LL},
    {"price_cents", 18446744073709551615ULL},
    {"price_cents", true},
    {"currency", "usd"},
    {"currency", "EURO"},
    {"currency", nullptr},
    {"category", "Home Goods"},
    {"category", ""},
    {"stock", 1.5},
    {"stock", -3},
    {"stock", 2'000'000'000},
    {"weight_grams", -1},
    {"images", "https://x"},
    {"images", json::array({1})},
    {"images", json::array({"ftp://x"})},
  };
  for (const auto& c : cases) {
    auto j = valid_draft();
    j[c.field] = c.value;
    auto fields = draft_error_fields(j.dump());
    CAPTURE(c.field, c.value.dump().substr(0, 40));
    REQUIRE(fields.size() == 1);
    CHECK(fields[0].rfind(c.field, 0) == 0);
  }
}

TEST_CASE("unknown fields are rejected and all problems reported at once") {
  auto j = valid_draft();
  j["colour"] = "red";
  j["price_cents"] = -5;
  auto fields = draft_error_fields(j.dump());
  CHECK(fields.size() == 2);
  CHECK(contains(fields, "colour"));
  CHECK(contains(fields, "price_cents"));
}

TEST_CASE("patches need at least one valid known field") {
  CHECK_FALSE(codec::decode_product_patch("{}").ok());
  CHECK_FALSE(codec::decode_product_patch("{\"id\":\"x\"}").ok());
  CHECK_FALSE(codec::decode_product_patch("{\"stock\":-1}").ok());
  CHECK_FALSE(codec::decode_product_patch("{\"name\":null}").ok());
  auto r = codec::decode_product_patch("{\"price_cents\":999}");
  REQUIRE(r.ok());
  CHECK(r->price_cents == 999);
  CHECK_FALSE(r->name);
  CHECK_FALSE(r->stock);
}

TEST_CASE("products encode every contract field as RFC 3339 and minor units") {
  model::product p;
  p.id = "prod_1";
  p.sku = "S";
  p.name = "N";
  p.price_cents = 100;
  p.currency = "USD";
  p.category = "home";
  p.stock = 2;
  p.created_at_ms = 1795550240829;
  p.updated_at_ms = 1795550240830;
  auto j = json::parse(codec::encode(p));
  for (auto field : {"id", "sku", "name", "description", "price_cents", "currency", "category",
                     "stock", "weight_grams", "images", "created_at", "updated_at"})
    CHECK(j.contains(field));
  CHECK(j.size() == 12); // no internal fields such as the version
  CHECK(j["created_at"] == "2026-11-24T19:57:20.829Z");
  CHECK(j["price_cents"].is_number_integer());
}

TEST_CASE("cursors round-trip and reject tampering") {
  auto id = core::new_id("prod");
  auto c = codec::encode_cursor(id);
  REQUIRE(codec::decode_cursor(c, "prod") == id);
  CHECK_FALSE(codec::decode_cursor(c, "cart"));
  CHECK_FALSE(codec::decode_cursor("", "prod"));
  CHECK_FALSE(codec::decode_cursor("not base64!", "prod"));
  CHECK_FALSE(codec::decode_cursor(std::string(300, 'A'), "prod"));
  auto tampered = c;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  CHECK_FALSE(codec::decode_cursor(tampered, "prod"));
  CHECK_FALSE(codec::decode_cursor(id, "prod")); // a raw id is not a cursor
}

TEST_CASE("ETags name versions") {
  CHECK(codec::etag(7) == "\"v7\"");
  CHECK(codec::version_of_etag("\"v7\"") == 7);
  CHECK(codec::version_of_etag("W/\"v12\"") == 12);
  CHECK_FALSE(codec::version_of_etag("v7"));
  CHECK_FALSE(codec::version_of_etag("\"v\""));
  CHECK_FALSE(codec::version_of_etag("\"v0\""));
  CHECK_FALSE(codec::version_of_etag("\"v7x\""));
  CHECK_FALSE(codec::version_of_etag("\"x7\""));
}

TEST_CASE("problems carry RFC 9457 members and the mapped status") {
  auto res = problem(failure{errc::invalid_input, "bad", {{"name", "is required"}}});
  CHECK(res.status == 400);
  CHECK(res.content_type == "application/problem+json");
  auto j = json::parse(res.body);
  CHECK(j["status"] == 400);
  CHECK(j["detail"] == "bad");
  CHECK(j["type"].is_string());
  CHECK(j["title"].is_string());
  REQUIRE(j["errors"].size() == 1);
  CHECK(j["errors"][0]["field"] == "name");

  CHECK(status_of(errc::not_found) == 404);
  CHECK(status_of(errc::conflict) == 409);
  CHECK(status_of(errc::precondition_failed) == 412);
  CHECK(status_of(errc::unavailable) == 503);
  CHECK(status_of(errc::timeout) == 504);
  auto unavailable = problem(failure{errc::unavailable, "down", {}});
  CHECK(std::any_of(unavailable.headers.begin(), unavailable.headers.end(),
                    [](const auto& h) { return h.first == "Retry-After"; }));
  auto unauthorized = problem(401, "who are you");
  CHECK(std::any_of(unauthorized.headers.begin(), unauthorized.headers.end(),
                    [](const auto& h) { return h.first == "WWW-Authenticate"; }));
}
