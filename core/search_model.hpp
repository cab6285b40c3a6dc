#pragma once
/// The records of product search (GET /search): a validated query, where a page starts, and the
/// answer. Plain structs like model.hpp; no library headers.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace emporium::model {

enum class search_sort : std::uint8_t { relevance, price_asc, price_desc, newest };

/// How the text of `q` was matched: no text, full text (ranked), or trigram similarity of the
/// name (the typo fallback, used when full text matched nothing).
enum class search_mode : std::uint8_t { none, full_text, fuzzy };

/// Where the next page starts: the sort key and id of the last item of the previous page.
/// Carried by the (signed) cursor, so that every page of one walk is read the same way.
struct search_position {
  search_mode mode = search_mode::none;
  std::string key; ///< the last item's sort key as text: score (relevance) or price; "" for newest
  std::string id;  ///< the last item's id
};

struct search_query {
  std::string text;               ///< q, trimmed, runs of white space collapsed; "" when absent
  std::vector<std::string> words; ///< the letters-and-digits words of `text`, lower-case (ASCII)
  std::vector<std::string> categories;   ///< any of these; none: every category (sorted, unique)
  std::optional<std::int64_t> min_price; ///< minor units, inclusive
  std::optional<std::int64_t> max_price;
  std::optional<bool> in_stock;
  search_sort sort = search_sort::relevance;
  std::int32_t limit = 20;
  std::optional<search_position> after;

  bool has_text() const { return !text.empty(); }
};

struct search_hit {
  std::string id;
  std::string sku;
  std::string name;
  std::int64_t price_cents = 0;
  std::string currency;
  std::string category;
  bool in_stock = false;
  std::int64_t created_at_ms = 0;
  /// A passage of the description with the matched words between \x01 and \x02 (the HTTP
  /// layer escapes the text and turns these into <mark> tags).
  std::string snippet;
  std::string sort_key; ///< as in search_position::key
};

/// A price band of the facets: [min, max], max absent for the last, open band.
struct price_band {
  std::int64_t min = 0;
  std::optional<std::int64_t> max;
  std::int64_t count = 0;
};

struct search_result {
  std::vector<search_hit> items;
  std::optional<search_position> next; ///< null on the last page
  /// Matching products per category and per price band, for the query without its category
  /// filter (a shop shows the other categories one could switch to).
  std::map<std::string, std::int64_t> category_counts;
  std::vector<price_band> price_bands;
  std::int64_t total = 0;         ///< matching products, all filters applied
  bool total_is_estimate = false; ///< more than search_exact_limit matched: total is sampled
  /// More than search_exact_limit matched in all categories: the facets are sampled.
  bool facets_are_estimate = false;
  search_mode mode = search_mode::none;
};

/// Up to this many matches, total and facets are exact counts.
inline constexpr std::int64_t search_exact_limit = 10'000;

} // namespace emporium::model
