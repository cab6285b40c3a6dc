// Unit tests of GET /search at the edge: parameter validation, signed cursors, the answer's
// shape and the escaping of snippets (http/search_codec.cpp). No services needed.

#include "http/search_codec.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

using namespace emporium;
namespace sc = emporium::http::search_codec;
using params = std::vector<std::pair<std::string, std::string>>;

namespace {

const std::string key = sc::cursor_key("secret-of-this-cluster");

/// The fields named by a failed decode.
std::vector<std::string> fields_of(const result<model::search_query>& r) {
  std::vector<std::string> out;
  if (!r)
    for (const auto& e : r.error().errors)
      out.push_back(e.field);
  return out;
}

bool rejects(const params& p, const std::string& field) {
  auto r = sc::decode_query(p, key);
  if (r)
    return false;
  auto fields = fields_of(r);
  return r.error().code == errc::invalid_input
         && std::find(fields.begin(), fields.end(), field) != fields.end();
}

model::search_query query_of(const params& p) {
  auto r = sc::decode_query(p, key);
  INFO((r ? std::string{} : r.error().detail));
  REQUIRE(r);
  return *r;
}

const char* valid_id = "prod_01M87MND68AQR404V608HZ5WTA";

} // namespace

TEST_CASE("search codec: defaults, and every parameter read", "[unit][search]") {
  auto d = query_of({});
  CHECK(d.text.empty());
  CHECK(d.words.empty());
  CHECK(d.categories.empty());
  CHECK_FALSE(d.min_price);
  CHECK_FALSE(d.max_price);
  CHECK_FALSE(d.in_stock);
  CHECK(d.sort == model::search_sort::relevance);
  CHECK(d.limit == 20);
  CHECK_FALSE(d.after);

  auto q = query_of({{"q", "  Steel   KETTLE\t2000 "},
                     {"category", "kitchen"},
                     {"category", "home"},
                     {"category", "kitchen"},
                     {"min_price", "0"},
                     {"max_price", "2500"},
                     {"in_stock", "false"},
                     {"sort", "price_desc"},
                     {"limit", "100"}});
  CHECK(q.text == "steel kettle 2000");
  CHECK(q.words == std::vector<std::string>{"steel", "kettle", "2000"});
  CHECK(q.categories == std::vector<std::string>{"home", "kitchen"}); // sorted, unique
  CHECK(q.min_price == 0);
  CHECK(q.max_price == 2500);
  CHECK(q.in_stock == false);
  CHECK(q.sort == model::search_sort::price_desc);
  CHECK(q.limit == 100);
  CHECK(query_of({{"min_price", "7"}, {"max_price", "7"}}).min_price == 7); // equal bounds
}

TEST_CASE("search codec: SQL and tsquery syntax in q is plain text, split into words",
          "[unit][search]") {
  auto q = query_of({{"q", "'; DROP TABLE products; -- & !lamp | (oak:*) <-> \"x\\y\""}});
  CHECK(q.words == std::vector<std::string>{"drop", "table", "products", "lamp", "oak", "x", "y"});
  // Only punctuation: valid text that has no word to search for.
  CHECK(query_of({{"q", "&|!():*'"}}).words.empty());
  // Letters of other scripts stay in their words.
  CHECK(query_of({{"q", "Café crème"}}).words == std::vector<std::string>{"café", "crème"});
}

TEST_CASE("search codec: bad input is rejected, naming the parameter", "[unit][search]") {
  CHECK(rejects({{"q", ""}}, "q"));
  CHECK(rejects({{"q", "   \t "}}, "q"));
  CHECK(rejects({{"q", std::string(1000, 'a')}}, "q"));
  CHECK(rejects({{"q", std::string(201, 'a')}}, "q"));
  CHECK(sc::decode_query({{"q", std::string(200, 'a')}}, key));
  // 200 characters of two bytes each are still 200 characters.
  std::string accented;
  for (int i = 0; i < 200; ++i)
    accented += "é";
  CHECK(sc::decode_query({{"q", accented}}, key));
  CHECK(rejects({{"q", "a b c d e f g h i j k l m n o p q"}}, "q")); // 17 words
  CHECK(rejects({{"q", std::string{"bad \xff utf-8"}}}, "q"));
  CHECK(rejects({{"q", std::string{"nul\0byte", 8}}}, "q"));
  CHECK(rejects({{"q", "a"}, {"q", "b"}}, "q"));
  CHECK(rejects({{"min_price", "100"}, {"max_price", "99"}}, "min_price"));
  CHECK(rejects({{"min_price", "abc"}}, "min_price"));
  CHECK(rejects({{"min_price", "-1"}}, "min_price"));
  CHECK(rejects({{"max_price", "1.5"}}, "max_price"));
  CHECK(rejects({{"max_price", "1e3"}}, "max_price"));
  CHECK(rejects({{"max_price", " 10"}}, "max_price"));
  CHECK(rejects({{"max_price", "99999999999999999999"}}, "max_price"));
  CHECK(rejects({{"sort", "cheapest"}}, "sort"));
  CHECK(rejects({{"sort", "PRICE_ASC"}}, "sort"));
  CHECK(rejects({{"in_stock", "yes"}}, "in_stock"));
  CHECK(rejects({{"limit", "0"}}, "limit"));
  CHECK(rejects({{"limit", "101"}}, "limit"));
  CHECK(rejects({{"limit", "ten"}}, "limit"));
  CHECK(rejects({{"category", "Kitchen"}}, "category"));
  CHECK(rejects({{"category", ""}}, "category"));
  CHECK(rejects({{"category", std::string(65, 'a')}}, "category"));
  CHECK(rejects({{"colour", "red"}}, "colour"));
  CHECK(rejects({{"cursor", "not-a-cursor"}}, "cursor"));
  CHECK(rejects({{"cursor", ""}}, "cursor"));
  // Every problem is reported at once.
  auto r = sc::decode_query({{"q", ""}, {"sort", "x"}, {"limit", "0"}, {"page", "2"}}, key);
  REQUIRE_FALSE(r);
  CHECK(fields_of(r).size() == 4);
}

TEST_CASE("search codec: a cursor pages only the query it was issued for", "[unit][search]") {
  auto q = query_of({{"q", "oak lamp"}, {"sort", "price_asc"}, {"category", "home"}});
  model::search_position pos{model::search_mode::full_text, "2599", valid_id};
  auto cursor = sc::encode_cursor(q, pos, key);

  auto with_cursor = [&](params p) {
    p.emplace_back("cursor", cursor);
    return p;
  };
  auto again = query_of(
    with_cursor({{"q", "Oak  LAMP"}, {"sort", "price_asc"}, {"category", "home"}, {"limit", "5"}}));
  REQUIRE(again.after);
  CHECK(again.after->mode == model::search_mode::full_text);
  CHECK(again.after->key == "2599");
  CHECK(again.after->id == valid_id);
  CHECK(again.limit == 5); // the page size may change between pages

  // Another query, sort, filter or key: rejected.
  CHECK(rejects(with_cursor({{"q", "oak lamps"}, {"sort", "price_asc"}, {"category", "home"}}),
                "cursor"));
  CHECK(rejects(with_cursor({{"q", "oak lamp"}, {"sort", "price_desc"}, {"category", "home"}}),
                "cursor"));
  CHECK(rejects(with_cursor({{"q", "oak lamp"}, {"sort", "price_asc"}}), "cursor"));
  CHECK(rejects(
    with_cursor(
      {{"q", "oak lamp"}, {"sort", "price_asc"}, {"category", "home"}, {"in_stock", "true"}}),
    "cursor"));
  CHECK_FALSE(sc::decode_cursor(cursor, q, sc::cursor_key("another-cluster")));

  // Any change to any character is detected.
  for (std::size_t i = 0; i < cursor.size(); ++i) {
    auto tampered = cursor;
    tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
    INFO("position " << i);
    CHECK_FALSE(sc::decode_cursor(tampered, q, key));
  }
  CHECK_FALSE(sc::decode_cursor(cursor + "0", q, key));
  CHECK_FALSE(sc::decode_cursor(cursor.substr(0, cursor.size() - 1), q, key));
}

TEST_CASE("search codec: positions that do not fit the query are refused even when signed",
          "[unit][search]") {
  auto text = query_of({{"q", "lamp"}});
  auto browse = query_of({{"category", "home"}});
  auto by_price = query_of({{"q", "lamp"}, {"sort", "price_asc"}});
  using m = model::search_mode;
  auto ok = [&](const model::search_query& q, model::search_position p) {
    return sc::decode_cursor(sc::encode_cursor(q, p, key), q, key).has_value();
  };
  CHECK(ok(text, {m::full_text, "0.6079271", valid_id}));
  CHECK(ok(text, {m::fuzzy, "0.5", valid_id}));
  CHECK(ok(browse, {m::none, "", valid_id}));
  CHECK(ok(by_price, {m::full_text, "1999", valid_id}));
  CHECK_FALSE(ok(text, {m::none, "", valid_id}));               // no text mode for a text query
  CHECK_FALSE(ok(browse, {m::full_text, "0.5", valid_id}));     // and the reverse
  CHECK_FALSE(ok(text, {m::full_text, "0.5; DROP", valid_id})); // a score must be a number
  CHECK_FALSE(ok(by_price, {m::full_text, "-1", valid_id}));    // a price a price
  CHECK_FALSE(ok(browse, {m::none, "12", valid_id}));           // newest carries no key
  CHECK_FALSE(ok(text, {m::full_text, "0.5", "cust_01M87MND68AQR404V608HZ5WTA"}));
  CHECK_FALSE(ok(text, {m::full_text, "0.5", "prod_x' OR '1'='1"}));
}

TEST_CASE("search codec: snippets are escaped HTML with <mark>ed matches", "[unit][search]") {
  CHECK(sc::snippet_html("a \x01lamp\x02 <script>alert('x')</script> & \"more\"")
        == "a <mark>lamp</mark> &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; "
           "&quot;more&quot;");
}

TEST_CASE("search codec: the answer's shape", "[unit][search]") {
  auto q = query_of({{"q", "lamp"}});
  model::search_result r;
  model::search_hit h;
  h.id = valid_id;
  h.sku = "SKU-1";
  h.name = "Oak Lamp";
  h.price_cents = 2599;
  h.currency = "USD";
  h.category = "home";
  h.in_stock = true;
  h.created_at_ms = 1'700'000'000'123;
  h.snippet = "an \x01oak\x02 lamp";
  r.items.push_back(h);
  r.next = model::search_position{model::search_mode::full_text, "0.5", valid_id};
  r.category_counts = {{"home", 3}, {"office", 1}};
  r.price_bands = {{0, 999, 1}, {1000, std::nullopt, 3}};
  r.total = 3;
  r.mode = model::search_mode::full_text;
  auto j = nlohmann::json::parse(sc::encode(r, q, key));
  const auto& item = j.at("items").at(0);
  CHECK(item.at("id") == valid_id);
  CHECK(item.at("name") == "Oak Lamp");
  CHECK(item.at("price_cents") == 2599);
  CHECK(item.at("currency") == "USD");
  CHECK(item.at("category") == "home");
  CHECK(item.at("in_stock") == true);
  CHECK(item.at("snippet") == "an <mark>oak</mark> lamp");
  CHECK(item.at("created_at") == "2023-11-14T22:13:20.123Z");
  auto cursor = j.at("next_cursor").get<std::string>();
  CHECK(sc::decode_cursor(cursor, q, key)->key == "0.5");
  CHECK(j.at("facets").at("category") == nlohmann::json{{"home", 3}, {"office", 1}});
  CHECK(j.at("facets").at("price").at(0) == nlohmann::json{{"min", 0}, {"max", 999}, {"count", 1}});
  CHECK(j.at("facets").at("price").at(1).at("max").is_null());
  CHECK(j.at("total") == 3);
  CHECK(j.at("total_is_estimate") == false);
  CHECK(j.at("facets_are_estimate") == false);
  CHECK(j.at("match") == "full_text");

  r.next.reset();
  CHECK(nlohmann::json::parse(sc::encode(r, q, key)).at("next_cursor").is_null());
}
