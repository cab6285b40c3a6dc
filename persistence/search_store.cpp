#include "persistence/search_store.hpp"
#include "persistence/pg.hpp"

#include "core/ids.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace emporium::persistence::search_store {

namespace {

using model::search_mode;
using model::search_sort;

// -- SQL ----------------------------------------------------------------------------------------
//
// One statement answers a page: its items, the facets and the total. A search is one read-only
// transaction: BEGIN, the settings below, that statement (two when the typo fallback runs),
// COMMIT. Every value is a parameter; the text of the statement is assembled only from the
// constants here, by mode, sort and number of categories:
//   $1 words text[]   $2 text (q, normalised)   $3 categories text[] (NULL: any)
//   $4 min price      $5 max price              $6 in stock (NULL: either)
//   $7 page size + 1  $8 sort key of the last item of the previous page   $9 its id

/// Local to the search's transaction. Sequential scans off: the planner prices a tsquery match
/// as cheap as a comparison, so from about a tenth of the catalog matching it reads the whole
/// table and matches every row, several times slower than the GIN bitmap (which needs no
/// recheck) even when every row matches. JIT off: with sequential scans priced out, the plan's
/// cost passes jit_above_cost, and compiling takes far longer than running. 0.5 instead of 0.6
/// for trigram word similarity lets a six-letter word with two letters swapped ("kettel") find
/// its word.
constexpr const char* local_settings =
  "SELECT set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true), "
  "set_config('pg_trgm.word_similarity_threshold', '0.5', true)";

constexpr const char* match_full_text = "p.search_vector @@ search_tsquery($1::text[])";
constexpr const char* match_fuzzy = "p.name %> $2::text";
constexpr const char* match_all = "true";

/// Relevance: the weighted rank (name A, category B, description C), and far above any rank a
/// name that is exactly the query.
constexpr const char* score_full_text =
  "ts_rank(p.search_vector, search_tsquery($1::text[]))"
  " + CASE WHEN lower(p.name) = lower($2::text) THEN 10 ELSE 0 END";
/// Typos: the best match of the query in the name, then, among equals, the closest name overall
/// (for "lamp" the name "Lamp" before "Lamp Stand").
constexpr const char* score_fuzzy =
  "word_similarity($2::text, p.name) + similarity($2::text, p.name)";
constexpr const char* score_none = "0";

/// Every filter but the category's (the facets are counted without it).
constexpr const char* filters =
  " AND ($4::bigint IS NULL OR p.price_cents >= $4::bigint)"
  " AND ($5::bigint IS NULL OR p.price_cents <= $5::bigint)"
  " AND ($6::boolean IS NULL OR (p.stock > 0) = $6::boolean)";
constexpr const char* any_category = " AND ($3::text[] IS NULL OR p.category = ANY ($3::text[]))";
/// The same for one category, as an equality: only so can the planner walk the (category, id)
/// index in id order (browsing a category, newest first) and count by it.
constexpr const char* one_category = " AND ($3::text[] IS NULL OR p.category = ($3::text[])[1])";

struct sort_sql {
  const char* order;  ///< ORDER BY over the columns of m
  const char* keyset; ///< rows after ($8, $9) in that order
  const char* key;    ///< the sort key as text, for the cursor
};

constexpr sort_sql by_relevance{"m.score DESC, m.id DESC", "(m.score, m.id) < ($8::real, $9::text)",
                                "m.score::text"};
constexpr sort_sql by_price_asc{
  "m.price_cents, m.id", "(m.price_cents, m.id) > ($8::bigint, $9::text)", "m.price_cents::text"};
constexpr sort_sql by_price_desc{"m.price_cents DESC, m.id DESC",
                                 "(m.price_cents, m.id) < ($8::bigint, $9::text)",
                                 "m.price_cents::text"};
/// Ids are ULIDs: their order is creation order.
constexpr sort_sql by_newest{"m.id DESC", "m.id < $9::text", "''"};

/// ts_headline marks matches with \x01 and \x02, removed from the text first; the HTTP layer
/// escapes the rest and turns them into <mark> tags. It parses all it is given: the first
/// 2,000 characters of a description (of up to 10,000) are enough for a snippet.
constexpr const char* snippet_full_text =
  "coalesce(ts_headline('english', translate(left(m.description, 2000), chr(1) || chr(2), ''),"
  " search_tsquery($1::text[]), 'StartSel=' || chr(1) || ', StopSel=' || chr(2)"
  " || ', MaxWords=30, MinWords=12, ShortWord=3, MaxFragments=0'), '')";
/// Without full text: the description's beginning, cut at a word.
constexpr const char* snippet_plain =
  "CASE WHEN length(m.description) <= 200 THEN translate(m.description, chr(1) || chr(2), '')"
  " ELSE regexp_replace(left(translate(m.description, chr(1) || chr(2), ''), 201),"
  " '\\s+\\S*$', '') || ' …' END";

/// Counting stops after this many matches; beyond, total and facets are estimated from a
/// sample of about 5,000 rows of the table (TABLESAMPLE SYSTEM, repeatable, so the estimate of
/// one query is stable while the catalog is).
constexpr const char* count_cap = "10001";
constexpr const char* sample_rate =
  "SELECT least(100, greatest(0.1, 500000 / greatest(c.reltuples, 1)))::float8 AS pct"
  " FROM pg_class c WHERE c.oid = 'products'::regclass";
constexpr const char* price_band_array = "ARRAY[1000, 2500, 5000, 10000, 25000, 50000]::bigint[]";

const sort_sql& sort_of(search_sort s, search_mode mode) {
  switch (s) {
    case search_sort::price_asc: return by_price_asc;
    case search_sort::price_desc: return by_price_desc;
    case search_sort::newest: return by_newest;
    case search_sort::relevance: break;
  }
  // Without text there is nothing to rank: newest first.
  return mode == search_mode::none ? by_newest : by_relevance;
}

/// The statement of one page in `mode`, with `sort`. Two shapes:
/// - with text (full text, fuzzy): one scan collects the matches (key columns only, up to the
///   cap); the page is sorted out of them and joined to its rows, and they are the counts.
///   Only beyond the cap does the page come from a scan of its own and the counts from a
///   sample. A query matching a few thousand products reads each of them once.
/// - without text (browsing): the page walks an index in sort order and stops at the page size;
///   counting is a capped scan of its own, as most of the catalog matches.
std::string statement(search_mode mode, search_sort sort, std::size_t categories) {
  const bool text = mode != search_mode::none;
  const char* category_filter = categories == 1 ? one_category : any_category;
  const char* match = mode == search_mode::full_text ? match_full_text
                      : mode == search_mode::fuzzy   ? match_fuzzy
                                                     : match_all;
  const auto& s = sort_of(sort, mode);
  // Ranked only when sorted by rank.
  const char* score = &s != &by_relevance              ? score_none
                      : mode == search_mode::full_text ? score_full_text
                                                       : score_fuzzy;
  const char* snippet = mode == search_mode::full_text ? snippet_full_text : snippet_plain;
  // The keys of the products of the page (id, price_cents, score) as m, in page order, from
  // `source` (a FROM clause whose rows are m).
  auto page_keys = [&](const std::string& source, const std::string& where) {
    return "SELECT m.id, m.price_cents, m.score FROM " + source + " WHERE " + where
           + " AND ($9::text IS NULL OR " + s.keyset + ") ORDER BY " + s.order + " LIMIT $7::int";
  };
  const std::string scan_columns = std::string{"SELECT p.id, p.category, p.price_cents, ("} + score
                                   + ")::real AS score FROM products p WHERE ";
  std::string sql;
  sql.reserve(6000);
  // Every parameter typed, also those this shape does not use (unreferenced, never evaluated).
  sql +=
    "WITH args AS (SELECT $1::text[], $2::text, $3::text[], $4::bigint, $5::bigint,"
    " $6::boolean, $7::int, $8::text, $9::text),\n";
  // Up to the cap: the products matching everything but the category filter.
  sql += "matches AS MATERIALIZED (";
  sql += text ? scan_columns
              : std::string{"SELECT p.category, p.price_cents FROM products p WHERE "};
  sql += match;
  sql += filters;
  sql += " LIMIT ";
  sql += count_cap;
  sql += "),\ncapped AS (SELECT count(*) >= ";
  sql += count_cap;
  sql += " AS yes FROM matches),\n";
  sql += "keys AS (";
  if (text) {
    sql += "("
           + page_keys("matches m",
                       "NOT (SELECT yes FROM capped) AND ($3::text[] IS NULL OR"
                       " m.category = ANY ($3::text[]))")
           + ")\nUNION ALL (";
    sql += page_keys("(" + scan_columns + "(SELECT yes FROM capped) AND " + match + filters
                       + category_filter + ") m",
                     "true");
    sql += ")";
  } else {
    sql += page_keys("(" + scan_columns + match + filters + category_filter + ") m", "true");
  }
  sql += "),\n";
  // The page's rows, numbered in page order (the numbers keep it through the UNION below).
  sql +=
    "page AS (SELECT m.id, m.price_cents, p.sku, p.name, p.currency, p.category, p.stock,"
    " p.description, (extract(epoch FROM p.created_at) * 1000)::bigint AS created_ms, ";
  sql += s.key;
  sql += " AS sort_key, row_number() OVER (ORDER BY ";
  sql += s.order;
  sql += ") AS ord FROM keys m JOIN products p ON p.id = m.id),\n";
  sql += "rate AS (";
  sql += sample_rate;
  sql +=
    "),\nsampled AS MATERIALIZED (SELECT p.category, p.price_cents FROM products p"
    " TABLESAMPLE SYSTEM ((SELECT pct FROM rate)) REPEATABLE (42)"
    " WHERE (SELECT yes FROM capped) AND ";
  sql += match;
  sql += filters;
  // When more than the cap match in all categories, those of the asked categories may still be
  // fewer: counted on their own, up to the cap again.
  sql +=
    "),\ncounted_in_categories AS (SELECT count(*) AS n FROM (SELECT 1 FROM products p"
    " WHERE (SELECT yes FROM capped) AND $3::text[] IS NOT NULL AND ";
  sql += match;
  sql += filters;
  sql += category_filter;
  sql += " LIMIT ";
  sql += count_cap;
  sql +=
    ") x),\nbasis AS (SELECT category, price_cents, 1::float8 AS weight FROM matches"
    " WHERE NOT (SELECT yes FROM capped) UNION ALL"
    " SELECT category, price_cents, 100 / (SELECT pct FROM rate) FROM sampled)\n";
  // One result: items ('i'), category counts ('c'), price band counts ('p'), total ('t').
  sql +=
    "SELECT 'i' AS kind, m.id, m.sku, m.name, m.price_cents, m.currency, m.category,"
    " m.stock > 0 AS in_stock, m.created_ms, m.sort_key, ";
  sql += snippet;
  sql +=
    " AS snippet, m.ord AS n FROM page m\n"
    "UNION ALL SELECT 'c', NULL, NULL, NULL, NULL, NULL, category, NULL, NULL, NULL, NULL,"
    " round(sum(weight))::bigint FROM basis GROUP BY category\n"
    "UNION ALL SELECT 'p', NULL, NULL, NULL, width_bucket(price_cents, ";
  sql += price_band_array;
  sql +=
    ")::bigint, NULL, NULL, NULL, NULL, NULL, NULL, round(sum(weight))::bigint FROM basis"
    " GROUP BY 5\n"
    "UNION ALL SELECT 't', NULL, NULL, NULL, (SELECT n FROM counted_in_categories), NULL,"
    " NULL, (SELECT yes FROM capped), NULL, NULL, NULL,"
    " round(coalesce(sum(weight) FILTER (WHERE $3::text[] IS NULL"
    " OR category = ANY ($3::text[])), 0))::bigint FROM basis";
  return sql;
}

using param = std::optional<std::string>;

param number(const std::optional<std::int64_t>& v) {
  return v ? param{std::to_string(*v)} : std::nullopt;
}

model::search_result run(pqxx::transaction_base& tx, const model::search_query& q,
                         search_mode mode) {
  std::vector<param> values{
    text_array(q.words),
    q.text,
    q.categories.empty() ? std::nullopt : param{text_array(q.categories)},
    number(q.min_price),
    number(q.max_price),
    q.in_stock ? param{*q.in_stock ? "true" : "false"} : std::nullopt,
    std::to_string(q.limit + 1),
    q.after && !q.after->key.empty() ? param{q.after->key} : std::nullopt,
    q.after ? param{q.after->id} : std::nullopt,
  };
  std::vector<const char*> raw;
  for (const auto& v : values)
    raw.push_back(v ? v->c_str() : nullptr);
  auto rows = tx.exec_params(statement(mode, q.sort, q.categories.size()),
                             pqxx::prepare::make_dynamic_params(raw));

  model::search_result r;
  r.mode = mode;
  const auto& bounds = price_band_bounds();
  r.price_bands.resize(bounds.size());
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    r.price_bands[i].min = bounds[i];
    if (i + 1 < bounds.size())
      r.price_bands[i].max = bounds[i + 1] - 1;
  }
  std::vector<std::pair<std::int64_t, model::search_hit>> items;
  for (const auto& row : rows) {
    auto kind = row[0].as<std::string>();
    if (kind == "i") {
      model::search_hit h;
      h.id = row[1].as<std::string>();
      h.sku = row[2].as<std::string>();
      h.name = row[3].as<std::string>();
      h.price_cents = row[4].as<std::int64_t>();
      h.currency = row[5].as<std::string>();
      h.category = row[6].as<std::string>();
      h.in_stock = row[7].as<bool>();
      h.created_at_ms = row[8].as<std::int64_t>();
      h.sort_key = row[9].as<std::string>();
      h.snippet = row[10].as<std::string>();
      items.emplace_back(row[11].as<std::int64_t>(), std::move(h));
    } else if (kind == "c") {
      auto n = row[11].as<std::int64_t>();
      if (n > 0)
        r.category_counts[row[6].as<std::string>()] = n;
    } else if (kind == "p") {
      // width_bucket over the bounds after the first: 0 below the second bound, and so on.
      auto band = row[4].as<std::int64_t>();
      if (band >= 0 && band < static_cast<std::int64_t>(bounds.size()))
        r.price_bands[static_cast<std::size_t>(band)].count = row[11].as<std::int64_t>();
    } else if (kind == "t") {
      // Counts are exact unless more than the cap matched in all categories. Then the total
      // of the asked categories is exact if their own count stayed under the cap; otherwise,
      // like the facets, it is estimated from a sample (and at least above the cap).
      r.facets_are_estimate = row[7].as<bool>();
      r.total = row[11].as<std::int64_t>();
      auto in_categories = row[4].as<std::int64_t>();
      if (r.facets_are_estimate && !q.categories.empty()
          && in_categories <= model::search_exact_limit) {
        r.total = in_categories;
      } else if (r.facets_are_estimate) {
        r.total_is_estimate = true;
        r.total = std::max(r.total, model::search_exact_limit + 1);
      }
    }
  }
  std::sort(items.begin(), items.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [ord, h] : items)
    r.items.push_back(std::move(h));
  if (static_cast<std::int32_t>(r.items.size()) > q.limit) {
    r.items.resize(static_cast<std::size_t>(q.limit));
    const auto& last = r.items.back();
    r.next = model::search_position{mode, last.sort_key, last.id};
  }
  return r;
}

/// Matches of the query before the category filter: the facet counts add up to them.
std::int64_t matched_in_any_category(const model::search_result& r) {
  std::int64_t n = 0;
  for (const auto& [category, count] : r.category_counts)
    n += count;
  return n;
}

/// The current catalog version: read, or made when there is none. Nothing when Redis cannot
/// be used; then the cache must be bypassed.
std::optional<std::string> catalog_version(redis_cache& cache) {
  return cache.generation(catalog_version_key, 24 * 3600);
}

const char* to_string(search_sort s) {
  switch (s) {
    case search_sort::relevance: return "relevance";
    case search_sort::price_asc: return "price_asc";
    case search_sort::price_desc: return "price_desc";
    case search_sort::newest: return "newest";
  }
  return "relevance";
}

using json = nlohmann::json;

json opt(const std::optional<std::int64_t>& v) {
  return v ? json(*v) : json();
}

} // namespace

const std::vector<std::int64_t>& price_band_bounds() {
  // Keep in step with price_band_array.
  static const std::vector<std::int64_t> bounds{0, 1000, 2500, 5000, 10000, 25000, 50000};
  return bounds;
}

std::string settings_statement() {
  return local_settings;
}

std::string page_statement(search_mode mode, search_sort sort, std::size_t categories) {
  return statement(mode, sort, categories);
}

model::search_result search(pqxx::transaction_base& tx, const model::search_query& q) {
  tx.exec(local_settings);
  auto mode = q.after ? q.after->mode : q.has_text() ? search_mode::full_text : search_mode::none;
  auto r = run(tx, q, mode);
  // The typo fallback: full text found nothing, even in other categories.
  if (!q.after && mode == search_mode::full_text && matched_in_any_category(r) == 0)
    r = run(tx, q, search_mode::fuzzy);
  return r;
}

model::search_result search_cached(backend& b, const model::search_query& q) {
  auto version = catalog_version(b.cache);
  std::string key;
  if (version) {
    key = cache_key(*version, q);
    if (auto hit = b.cache.get(key))
      if (auto r = decode(*hit))
        return std::move(*r);
  }
  pqxx::read_transaction tx{b.pg.connection()};
  auto r = search(tx, q);
  tx.commit();
  if (version)
    b.cache.set(key, encode(r), std::min(result_ttl_s, b.cache_ttl_s));
  return r;
}

void catalog_changed(redis_cache& cache) {
  // A failed delete leaves the key to invalidate: it is not read until Redis was told to drop
  // it (redis_cache). Should that be lost (the process stopped first), the results cached
  // under the old token still expire within result_ttl_s.
  cache.del(catalog_version_key);
}

std::string cache_key(const std::string& version, const model::search_query& q) {
  json after;
  if (q.after)
    after = json::array({static_cast<int>(q.after->mode), q.after->key, q.after->id});
  json j = json::array({1, q.text, q.words, q.categories, opt(q.min_price), opt(q.max_price),
                        q.in_stock ? json(*q.in_stock) : json(), to_string(q.sort), q.limit,
                        after});
  return "emporium:search:" + version + ":"
         + core::sha256_hex(j.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string encode(const model::search_result& r) {
  json items = json::array();
  for (const auto& h : r.items)
    items.push_back(json::array({h.id, h.sku, h.name, h.price_cents, h.currency, h.category,
                                 h.in_stock, h.created_at_ms, h.snippet, h.sort_key}));
  json bands = json::array();
  for (const auto& b : r.price_bands)
    bands.push_back(json::array({b.min, opt(b.max), b.count}));
  json next;
  if (r.next)
    next = json::array({static_cast<int>(r.next->mode), r.next->key, r.next->id});
  json j{{"items", std::move(items)},
         {"next", std::move(next)},
         {"categories", r.category_counts},
         {"bands", std::move(bands)},
         {"total", r.total},
         {"estimate", r.total_is_estimate},
         {"facets_estimate", r.facets_are_estimate},
         {"mode", static_cast<int>(r.mode)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<model::search_result> decode(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object())
    return std::nullopt;
  try {
    model::search_result r;
    for (const auto& x : j.at("items")) {
      model::search_hit h;
      x.at(0).get_to(h.id);
      x.at(1).get_to(h.sku);
      x.at(2).get_to(h.name);
      x.at(3).get_to(h.price_cents);
      x.at(4).get_to(h.currency);
      x.at(5).get_to(h.category);
      x.at(6).get_to(h.in_stock);
      x.at(7).get_to(h.created_at_ms);
      x.at(8).get_to(h.snippet);
      x.at(9).get_to(h.sort_key);
      r.items.push_back(std::move(h));
    }
    const auto& next = j.at("next");
    if (!next.is_null())
      r.next = model::search_position{static_cast<search_mode>(next.at(0).get<int>()),
                                      next.at(1).get<std::string>(), next.at(2).get<std::string>()};
    j.at("categories").get_to(r.category_counts);
    for (const auto& b : j.at("bands")) {
      model::price_band band;
      b.at(0).get_to(band.min);
      if (!b.at(1).is_null())
        band.max = b.at(1).get<std::int64_t>();
      b.at(2).get_to(band.count);
      r.price_bands.push_back(band);
    }
    j.at("total").get_to(r.total);
    j.at("estimate").get_to(r.total_is_estimate);
    j.at("facets_estimate").get_to(r.facets_are_estimate);
    r.mode = static_cast<search_mode>(j.at("mode").get<int>());
    return r;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

} // namespace emporium::persistence::search_store
