// Integration tests of product search (persistence/search_store.cpp) against the real
// PostgreSQL and Redis of the test environment. The database is shared with other tests and
// may hold a large seeded catalog: every test makes its own products around a word and
// categories no other product has, so that its counts are exact and its own.

#include "core/ids.hpp"
#include "persistence/migrations.hpp"
#include "persistence/product_store.hpp"
#include "persistence/search_store.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <vector>

using namespace emporium;
namespace ss = emporium::persistence::search_store;
using model::search_mode;
using model::search_sort;

namespace {

persistence::pg_options pg_opts() {
  return persistence::pg_options{test::pg_url(), 2'000, 30'000};
}

void ensure_schema() {
  static std::once_flag once;
  std::call_once(once, [] {
    persistence::pg_session s{pg_opts()};
    persistence::migrate(s);
  });
}

/// A word of letters no other product has, ending in 'x' so that no stemmer rule shortens it.
std::string unique_word() {
  static std::atomic<int> counter{0};
  auto seed = std::to_string(::getpid()) + "/"
              + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "/"
              + std::to_string(counter.fetch_add(1));
  auto h = core::sha256_hex(seed);
  std::string w = "zq";
  for (int i = 0; i < 10; ++i)
    w += static_cast<char>('a' + std::stoi(h.substr(2 * i, 2), nullptr, 16) % 26);
  return w + "x";
}

/// `word` with two adjacent, different letters swapped in its middle: a typo.
std::string misspell(std::string word) {
  for (std::size_t i = 5; i + 2 < word.size(); ++i)
    if (word[i] != word[i + 1]) {
      std::swap(word[i], word[i + 1]);
      return word;
    }
  FAIL("no two adjacent letters differ in " << word);
  return word;
}

/// A small catalog of its own: products named around `word`, in two categories of its own.
struct catalog {
  std::string word = unique_word();
  std::string cat_a = test::unique("srch-a");
  std::string cat_b = test::unique("srch-b");
  std::vector<model::product> products; ///< in creation (id) order
  persistence::pg_session session{pg_opts()};

  catalog() {
    ensure_schema();
    // name, description, price, stock, category
    add(word + " Lamp", "A lamp.", 1000, 5, cat_a);                                 // 0: exact name
    add(word + " Lamp Deluxe", "A bigger lamp.", 2500, 0, cat_a);                   // 1
    add("Deluxe " + word + " Lamp Stand", "A stand.", 999, 3, cat_b);               // 2
    add("Brass Reading Lamp", "Pairs well with any " + word + ".", 5000, 1, cat_b); // 3
    // Gadgets with repeated prices, so that sorts have ties to break.
    const std::int64_t prices[] = {1500,  1500, 1500, 700,   2500, 26000,
                                   60000, 1000, 999,  12000, 1500, 0};
    for (int i = 0; i < 12; ++i)
      add(word + " Gadget " + std::to_string(i), "Gadget number " + std::to_string(i) + ".",
          prices[i], i % 3 == 0 ? 0 : i, i % 2 ? cat_a : cat_b);
  }

  void add(const std::string& name, const std::string& description, std::int64_t price,
           std::int64_t stock, const std::string& category) {
    model::product_draft d;
    d.sku = test::unique("SRCH");
    d.name = name;
    d.description = description;
    d.price_cents = price;
    d.currency = "USD";
    d.category = category;
    d.stock = stock;
    pqxx::work tx{session.connection()};
    products.push_back(persistence::product_store::insert(tx, core::new_id("prod"), d));
    tx.commit();
  }

  model::search_query query(const std::string& text = {}) const {
    model::search_query q;
    q.text = text;
    std::string w;
    for (char c : text + " ") {
      if (std::isalnum(static_cast<unsigned char>(c))) {
        w += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      } else if (!w.empty()) {
        q.words.push_back(w);
        w.clear();
      }
    }
    q.categories = {cat_a, cat_b};
    std::sort(q.categories.begin(), q.categories.end());
    q.limit = 100;
    return q;
  }

  model::search_result search(const model::search_query& q) {
    pqxx::read_transaction tx{session.connection()};
    auto r = ss::search(tx, q);
    tx.commit();
    return r;
  }

  /// The ids of the products for which `pred` holds.
  template <class Pred>
  std::set<std::string> ids_where(Pred pred) const {
    std::set<std::string> out;
    for (const auto& p : products)
      if (pred(p))
        out.insert(p.id);
    return out;
  }
};

std::set<std::string> ids_of(const model::search_result& r) {
  std::set<std::string> out;
  for (const auto& h : r.items)
    out.insert(h.id);
  return out;
}

std::vector<std::string> ordered_ids(const model::search_result& r) {
  std::vector<std::string> out;
  for (const auto& h : r.items)
    out.push_back(h.id);
  return out;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::int64_t sum_categories(const model::search_result& r) {
  std::int64_t n = 0;
  for (const auto& [c, k] : r.category_counts)
    n += k;
  return n;
}

std::int64_t sum_bands(const model::search_result& r) {
  std::int64_t n = 0;
  for (const auto& b : r.price_bands)
    n += b.count;
  return n;
}

/// The order each sort promises, checked pairwise.
void check_order(const model::search_result& r, search_sort sort) {
  for (std::size_t i = 1; i < r.items.size(); ++i) {
    const auto& a = r.items[i - 1];
    const auto& b = r.items[i];
    INFO("items " << i - 1 << " and " << i << ": " << a.id << " " << a.sort_key << ", " << b.id
                  << " " << b.sort_key);
    switch (sort) {
      case search_sort::price_asc:
        CHECK((a.price_cents < b.price_cents || (a.price_cents == b.price_cents && a.id < b.id)));
        break;
      case search_sort::price_desc:
        CHECK((a.price_cents > b.price_cents || (a.price_cents == b.price_cents && a.id > b.id)));
        break;
      case search_sort::newest: CHECK(a.id > b.id); break;
      case search_sort::relevance: {
        auto sa = std::stod(a.sort_key), sb = std::stod(b.sort_key);
        CHECK((sa > sb || (sa == sb && a.id > b.id)));
        break;
      }
    }
  }
}

constexpr search_sort all_sorts[] = {search_sort::relevance, search_sort::price_asc,
                                     search_sort::price_desc, search_sort::newest};

} // namespace

TEST_CASE("search: an exact name match ranks first, name matches before description matches",
          "[pg][search]") {
  catalog c;
  auto r = c.search(c.query(c.word + " lamp"));
  REQUIRE(r.mode == search_mode::full_text);
  REQUIRE(r.items.size() == 4);
  CHECK(r.items[0].id == c.products[0].id); // named exactly "<word> Lamp"
  CHECK(r.items[3].id == c.products[3].id); // the word only in its description
  CHECK(ids_of(r)
        == std::set<std::string>{c.products[0].id, c.products[1].id, c.products[2].id,
                                 c.products[3].id});
  check_order(r, search_sort::relevance);
  // Case and spacing do not matter for the exact match.
  auto upper = c.search(c.query(c.word + " LAMP"));
  REQUIRE_FALSE(upper.items.empty());
  CHECK(upper.items[0].id == c.products[0].id);
  // The snippet marks the matched words of the description.
  for (const auto& h : r.items)
    if (h.id == c.products[3].id)
      CHECK(contains(h.snippet, "\x01" + c.word + "\x02"));
}

TEST_CASE("search: prefixes match as typed and as stemmed", "[pg][search]") {
  catalog c;
  auto every = c.ids_where([](const model::product&) { return true; });
  CHECK(ids_of(c.search(c.query(c.word.substr(0, 6)))) == every);
  CHECK(ids_of(c.search(c.query(c.word.substr(0, 6) + " lam")))
        == std::set<std::string>{c.products[0].id, c.products[1].id, c.products[2].id,
                                 c.products[3].id});
  // "gadgets" (stemmed: gadget) and "gadg" find the gadgets; "deluxe" the two deluxe lamps.
  auto gadgets = c.ids_where([](const model::product& p) { return contains(p.name, "Gadget"); });
  CHECK(ids_of(c.search(c.query(c.word + " gadgets"))) == gadgets);
  CHECK(ids_of(c.search(c.query(c.word + " gadg"))) == gadgets);
  CHECK(ids_of(c.search(c.query(c.word + " deluxe")))
        == std::set<std::string>{c.products[1].id, c.products[2].id});
}

TEST_CASE("search: a misspelt word finds by trigram similarity when full text finds nothing",
          "[pg][search]") {
  catalog c;
  auto typo = misspell(c.word);
  REQUIRE(typo != c.word);
  auto r = c.search(c.query(typo + " lamp"));
  CHECK(r.mode == search_mode::fuzzy);
  REQUIRE_FALSE(r.items.empty());
  CHECK(r.items[0].id == c.products[0].id); // the closest name
  check_order(r, search_sort::relevance);
  auto by_name = c.ids_where([&](const model::product& p) { return contains(p.name, c.word); });
  auto only_word = c.search(c.query(typo));
  CHECK(only_word.mode == search_mode::fuzzy);
  CHECK(ids_of(only_word) == by_name);
  CHECK(only_word.total == static_cast<std::int64_t>(by_name.size()));
  // A word matching nothing at all stays empty; one matching by full text is not "corrected".
  auto nothing = c.search(c.query(unique_word()));
  CHECK(nothing.items.empty());
  CHECK(nothing.total == 0);
  CHECK(c.search(c.query(c.word)).mode == search_mode::full_text);
}

TEST_CASE("search: each filter, alone and together", "[pg][search]") {
  catalog c;
  auto q = c.query(c.word);
  SECTION("category") {
    q.categories = {c.cat_a};
    auto r = c.search(q);
    CHECK(ids_of(r) == c.ids_where([&](const model::product& p) { return p.category == c.cat_a; }));
    for (const auto& h : r.items)
      CHECK(h.category == c.cat_a);
  }
  SECTION("price range, inclusive") {
    q.min_price = 999;
    q.max_price = 1500;
    CHECK(ids_of(c.search(q)) == c.ids_where([](const model::product& p) {
      return p.price_cents >= 999 && p.price_cents <= 1500;
    }));
    q.min_price = 60000;
    q.max_price.reset();
    CHECK(ids_of(c.search(q))
          == c.ids_where([](const model::product& p) { return p.price_cents >= 60000; }));
    q.min_price.reset();
    q.max_price = 0;
    CHECK(ids_of(c.search(q))
          == c.ids_where([](const model::product& p) { return p.price_cents == 0; }));
  }
  SECTION("in stock, and not") {
    q.in_stock = true;
    auto in = c.search(q);
    CHECK(ids_of(in) == c.ids_where([](const model::product& p) { return p.stock > 0; }));
    for (const auto& h : in.items)
      CHECK(h.in_stock);
    q.in_stock = false;
    auto out = c.search(q);
    CHECK(ids_of(out) == c.ids_where([](const model::product& p) { return p.stock == 0; }));
    for (const auto& h : out.items)
      CHECK_FALSE(h.in_stock);
  }
  SECTION("all together, with and without text") {
    q.categories = {c.cat_b};
    q.min_price = 700;
    q.max_price = 26000;
    q.in_stock = true;
    auto expected = c.ids_where([&](const model::product& p) {
      return p.category == c.cat_b && p.price_cents >= 700 && p.price_cents <= 26000 && p.stock > 0;
    });
    REQUIRE_FALSE(expected.empty());
    CHECK(ids_of(c.search(q)) == expected);
    auto browse = c.query();
    browse.categories = q.categories;
    browse.min_price = q.min_price;
    browse.max_price = q.max_price;
    browse.in_stock = q.in_stock;
    CHECK(ids_of(c.search(browse)) == expected);
  }
}

TEST_CASE("search: every sort orders as promised, ties broken by id", "[pg][search]") {
  catalog c;
  for (auto sort : all_sorts) {
    for (bool text : {true, false}) {
      auto q = text ? c.query(c.word) : c.query();
      q.sort = sort;
      auto r = c.search(q);
      INFO("sort " << static_cast<int>(sort) << (text ? " with text" : " without text"));
      CHECK(r.items.size() == c.products.size());
      if (text || sort != search_sort::relevance)
        check_order(r, sort);
      else
        check_order(r, search_sort::newest); // nothing to rank without text: newest first
    }
  }
}

TEST_CASE("search: facets add up, and are counted without the category filter", "[pg][search]") {
  catalog c;
  auto q = c.query(c.word);
  auto r = c.search(q);
  auto in_a = static_cast<std::int64_t>(
    c.ids_where([&](const model::product& p) { return p.category == c.cat_a; }).size());
  auto in_b = static_cast<std::int64_t>(c.products.size()) - in_a;
  CHECK_FALSE(r.total_is_estimate);
  CHECK_FALSE(r.facets_are_estimate);
  CHECK(r.total == static_cast<std::int64_t>(c.products.size()));
  CHECK(r.category_counts == std::map<std::string, std::int64_t>{{c.cat_a, in_a}, {c.cat_b, in_b}});
  CHECK(sum_categories(r) == r.total);
  CHECK(sum_bands(r) == r.total);
  // Bands: [0,999] [1000,2499] [2500,4999] [5000,9999] [10000,24999] [25000,49999] [50000,)
  const auto& bounds = ss::price_band_bounds();
  REQUIRE(r.price_bands.size() == bounds.size());
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    auto lo = bounds[i];
    auto hi = i + 1 < bounds.size() ? bounds[i + 1] - 1 : INT64_MAX;
    CHECK(r.price_bands[i].min == lo);
    CHECK(r.price_bands[i].max
          == (i + 1 < bounds.size() ? std::optional<std::int64_t>{hi} : std::nullopt));
    CHECK(r.price_bands[i].count
          == static_cast<std::int64_t>(c.ids_where([&](const model::product& p) {
                                          return p.price_cents >= lo && p.price_cents <= hi;
                                        })
                                         .size()));
  }
  // Narrowed to one category: the total follows, the facets still show both.
  q.categories = {c.cat_a};
  auto narrowed = c.search(q);
  CHECK(narrowed.total == in_a);
  CHECK(narrowed.category_counts == r.category_counts);
  CHECK(narrowed.category_counts.at(c.cat_a) == narrowed.total);
  // Other filters do narrow the facets.
  q.in_stock = true;
  auto stocked = c.search(q);
  auto in_stock = c.ids_where([](const model::product& p) { return p.stock > 0; });
  CHECK(sum_categories(stocked) == static_cast<std::int64_t>(in_stock.size()));
  CHECK(sum_bands(stocked) == sum_categories(stocked));
}

TEST_CASE(
  "search: walking every page returns each match exactly once, in order, for every "
  "sort",
  "[pg][search][paging]") {
  catalog c;
  for (auto sort : all_sorts) {
    for (int variant = 0; variant < 4; ++variant) {
      // full text; browsing two categories; the typo fallback; browsing one category
      auto typo = misspell(c.word);
      auto q = variant == 0 ? c.query(c.word) : variant == 2 ? c.query(typo) : c.query();
      if (variant == 3)
        q.categories = {c.cat_a};
      q.sort = sort;
      auto all = c.search(q);
      INFO("sort " << static_cast<int>(sort) << ", variant " << variant);
      REQUIRE(all.items.size() >= 8);
      REQUIRE_FALSE(all.next);
      std::vector<std::string> walked;
      q.limit = 3;
      int pages = 0;
      for (;;) {
        auto page = c.search(q);
        ++pages;
        REQUIRE(page.items.size() <= 3);
        CHECK(page.total == all.total); // the total is the query's, on every page
        CHECK(page.mode == all.mode);
        for (const auto& h : page.items)
          walked.push_back(h.id);
        if (!page.next)
          break;
        REQUIRE(pages < 100);
        q.after = page.next;
      }
      CHECK(walked == ordered_ids(all));
      CHECK(std::set<std::string>(walked.begin(), walked.end()).size() == walked.size());
      CHECK(pages == static_cast<int>((all.items.size() + 2) / 3));
    }
  }
}

TEST_CASE("search: SQL and tsquery syntax in the text is plain text", "[pg][search]") {
  catalog c;
  for (const std::string& text :
       std::vector<std::string>{c.word + "'; DROP TABLE products; --", c.word + " & !lamp | (x:*)",
                                c.word + " <-> \\' \"", "'", "\\", ":*", "!!!"}) {
    INFO(text);
    auto r = c.search(c.query(text));
    for (const auto& h : r.items)
      CHECK((h.category == c.cat_a || h.category == c.cat_b));
  }
  // The words are searched for; operators are not applied.
  CHECK(ids_of(c.search(c.query(c.word + " | lamp")))
        == ids_of(c.search(c.query(c.word + " lamp"))));
  CHECK(ids_of(c.search(c.query("!" + c.word))) == ids_of(c.search(c.query(c.word))));
  pqxx::nontransaction tx{c.session.connection()};
  CHECK(tx.exec("SELECT to_regclass('products') IS NOT NULL")[0][0].as<bool>());
}

TEST_CASE("search: beyond 10,000 matches the total and facets are estimates, flagged",
          "[pg][search]") {
  ensure_schema();
  persistence::pg_session s{pg_opts()};
  auto word = unique_word();
  auto big = test::unique("srch-big");
  auto small = test::unique("srch-small");
  {
    // Real ids: other tests page through every product, and their cursors hold ids.
    std::string ids = "{";
    for (int i = 0; i < 10055; ++i)
      ids += (i ? "," : "") + core::new_id("prod");
    ids += "}";
    pqxx::work tx{s.connection()};
    tx.exec_params(
      "INSERT INTO products (id, sku, name, description, price_cents, currency, category, stock)"
      " SELECT i.id, $1 || g, $2 || ' Item ' || g, '', g, 'USD',"
      " CASE WHEN g <= 10050 THEN $3 ELSE $4 END, g % 2"
      " FROM unnest($5::text[]) WITH ORDINALITY AS i (id, g)",
      test::unique("SRCH-BIG-"), word, big, small, ids);
    tx.commit();
  }
  auto search = [&](model::search_query q) {
    q.text = word;
    q.words = {word};
    pqxx::read_transaction tx{s.connection()};
    auto r = ss::search(tx, q);
    tx.commit();
    return r;
  };
  auto all = search({});
  CHECK(all.total_is_estimate);
  CHECK(all.facets_are_estimate);
  CHECK(all.total > 10'000);
  CHECK(all.total < 20'000);
  CHECK(all.items.size() == 20);
  // Few enough in the asked category: an exact total, though the facets are sampled.
  model::search_query in_small;
  in_small.categories = {small};
  auto r = search(in_small);
  CHECK_FALSE(r.total_is_estimate);
  CHECK(r.facets_are_estimate);
  CHECK(r.total == 5);
  CHECK(r.items.size() == 5);
  // Under the cap once filtered: exact again.
  model::search_query cheap;
  cheap.max_price = 99;
  auto exact = search(cheap);
  CHECK_FALSE(exact.total_is_estimate);
  CHECK_FALSE(exact.facets_are_estimate);
  CHECK(exact.total == 99);
  CHECK(sum_categories(exact) == 99);

  // Ten thousand products of no use to anyone else: gone again.
  pqxx::work tx{s.connection()};
  tx.exec_params("DELETE FROM products WHERE category = $1 OR category = $2", big, small);
  tx.commit();
}

TEST_CASE("search: results are cached per catalog version, and a catalog change is seen at once",
          "[pg][search][cache]") {
  catalog c;
  auto settings = test::test_settings();
  persistence::backend b{settings};
  auto q = c.query(c.word + " gadget");
  auto first = ss::search_cached(b, q);
  auto before = first.total;
  REQUIRE(before == 12);

  // A write that does not announce itself is not seen: the answer comes from the cache (unless
  // another writer on this Redis changed the catalog version meanwhile).
  auto version = b.cache.get(ss::catalog_version_key);
  c.add(c.word + " Gadget late", "", 100, 1, c.cat_a);
  auto cached = ss::search_cached(b, q);
  if (version && b.cache.get(ss::catalog_version_key) == version)
    CHECK(cached.total == before);
  // Announced, as every write path does after its commit: seen by the very next search.
  ss::catalog_changed(b.cache);
  auto after = ss::search_cached(b, q);
  CHECK(after.total == before + 1);
  CHECK(ids_of(after).count(c.products.back().id) == 1);

  // A price change, announced: the new price.
  {
    auto changed = c.products.back();
    changed.price_cents = 4321;
    pqxx::work tx{c.session.connection()};
    REQUIRE(persistence::product_store::update(tx, changed, changed.version));
    tx.commit();
  }
  ss::catalog_changed(b.cache);
  for (const auto& h : ss::search_cached(b, q).items)
    if (h.id == c.products.back().id)
      CHECK(h.price_cents == 4321);

  // Without Redis, search works from PostgreSQL and is never stale.
  auto offline = settings;
  offline.redis.url = "redis://127.0.0.1:1/0";
  persistence::backend no_redis{offline};
  c.add(c.word + " Gadget offline", "", 100, 1, c.cat_a);
  CHECK(ss::search_cached(no_redis, q).total == before + 2);
  c.add(c.word + " Gadget offline two", "", 100, 1, c.cat_a);
  CHECK(ss::search_cached(no_redis, q).total == before + 3);
}

TEST_CASE("search: the cache encoding round-trips", "[pg][search][cache]") {
  model::search_result r;
  model::search_hit h;
  h.id = "prod_01M87MND68AQR404V608HZ5WTA";
  h.sku = "S";
  h.name = "N \"quoted\" ünï";
  h.price_cents = 5;
  h.currency = "EUR";
  h.category = "c";
  h.in_stock = true;
  h.created_at_ms = 42;
  h.snippet =
    "a \x01"
    "b\x02";
  h.sort_key = "0.5";
  r.items = {h};
  r.next = model::search_position{search_mode::fuzzy, "0.5", h.id};
  r.category_counts = {{"c", 1}};
  r.price_bands = {{0, 999, 1}, {1000, std::nullopt, 0}};
  r.total = 1;
  r.total_is_estimate = true;
  r.facets_are_estimate = true;
  r.mode = search_mode::fuzzy;
  auto back = ss::decode(ss::encode(r));
  REQUIRE(back);
  CHECK(ss::encode(*back) == ss::encode(r));
  CHECK(back->items.at(0).snippet == h.snippet);
  CHECK(back->next->mode == search_mode::fuzzy);
  CHECK_FALSE(ss::decode("{}"));
  CHECK_FALSE(ss::decode("not json"));
}
