#include "http/search_codec.hpp"

#include "http/json_codec.hpp"

#include "core/ids.hpp"
#include "persistence/pg.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>

namespace emporium::http::search_codec {

namespace {

using json = nlohmann::json;
using model::search_mode;
using model::search_sort;

// -- text ---------------------------------------------------------------------------------------

/// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF); counts code points.
bool valid_utf8(std::string_view s, std::size_t& chars) {
  chars = 0;
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      n = 1;
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      n = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size())
      return false;
    for (std::size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr std::uint32_t min_of[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_of[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
    ++chars;
  }
  return true;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/// Trimmed, runs of white space as one space, ASCII letters lower-case (search is
/// case-insensitive, so this only makes equal queries share a cache entry).
std::string normalise(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (is_space(c)) {
      space = !out.empty();
      continue;
    }
    if (space)
      out += ' ';
    space = false;
    out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return out;
}

/// The words: runs of ASCII letters and digits and of non-ASCII characters (letters of other
/// scripts; PostgreSQL's parser splits what is not). Everything else, SQL and tsquery syntax
/// included, separates words and is otherwise ignored.
std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> out;
  std::string w;
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    bool word = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
    if (word) {
      w += ch;
    } else if (!w.empty()) {
      out.push_back(std::move(w));
      w.clear();
    }
  }
  if (!w.empty())
    out.push_back(std::move(w));
  return out;
}

bool is_slug(std::string_view s) {
  if (s.empty() || s.size() > 64)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

std::optional<std::int64_t> parse_price(std::string_view s) {
  if (s.empty() || s.size() > 15)
    return std::nullopt;
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || v < 0 || v > max_price_cents)
    return std::nullopt;
  return v;
}

std::optional<search_sort> parse_sort(std::string_view s) {
  if (s == "relevance")
    return search_sort::relevance;
  if (s == "price_asc")
    return search_sort::price_asc;
  if (s == "price_desc")
    return search_sort::price_desc;
  if (s == "newest")
    return search_sort::newest;
  return std::nullopt;
}

const char* sort_name(search_sort s) {
  switch (s) {
    case search_sort::relevance: return "relevance";
    case search_sort::price_asc: return "price_asc";
    case search_sort::price_desc: return "price_desc";
    case search_sort::newest: return "newest";
  }
  return "relevance";
}

const char* mode_name(search_mode m) {
  switch (m) {
    case search_mode::full_text: return "full_text";
    case search_mode::fuzzy: return "fuzzy";
    case search_mode::none: break;
  }
  return "none";
}

// -- cursors ------------------------------------------------------------------------------------

/// What a cursor is bound to: every parameter that decides which products match and in what
/// order (not the page size, which a client may change between pages).
std::string fingerprint(const model::search_query& q) {
  json j = json::array({q.text, q.categories, q.min_price ? json(*q.min_price) : json(),
                        q.max_price ? json(*q.max_price) : json(),
                        q.in_stock ? json(*q.in_stock) : json(), sort_name(q.sort)});
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

constexpr int cursor_version = 1;

/// The sort key a position of this query carries: a score, a price, or nothing (newest).
enum class key_kind { none, score, price };

key_kind key_of(const model::search_query& q, search_mode mode) {
  switch (q.sort) {
    case search_sort::price_asc:
    case search_sort::price_desc: return key_kind::price;
    case search_sort::newest: return key_kind::none;
    case search_sort::relevance: break;
  }
  return mode == search_mode::none ? key_kind::none : key_kind::score;
}

bool valid_score(const std::string& s) {
  if (s.empty() || s.size() > 32)
    return false;
  if (s.find_first_not_of("0123456789.eE+-") != std::string::npos)
    return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(v);
}

} // namespace

std::string cursor_key(std::string_view secret) {
  return core::sha256_hex(std::string{"emporium/search-cursor/v1:"} + std::string{secret});
}

std::string encode_cursor(const model::search_query& q, const model::search_position& pos,
                          std::string_view key) {
  auto body = json::array({cursor_version, static_cast<int>(pos.mode), pos.key, pos.id}).dump();
  return core::base64url_encode(body) + "." + core::sign(key, fingerprint(q) + "\n" + body);
}

std::optional<model::search_position> decode_cursor(std::string_view cursor,
                                                    const model::search_query& q,
                                                    std::string_view key) {
  if (cursor.empty() || cursor.size() > 512)
    return std::nullopt;
  auto dot = cursor.find('.');
  if (dot == std::string_view::npos)
    return std::nullopt;
  auto body = core::base64url_decode(cursor.substr(0, dot));
  if (!body || !core::verify(key, fingerprint(q) + "\n" + *body, cursor.substr(dot + 1)))
    return std::nullopt;
  // Signed by us; checked all the same, so that a leaked key cannot inject anything odd.
  auto j = json::parse(*body, nullptr, false);
  if (!j.is_array() || j.size() != 4 || j[0] != cursor_version || !j[1].is_number_integer()
      || !j[2].is_string() || !j[3].is_string())
    return std::nullopt;
  auto mode_number = j[1].get<int>();
  if (mode_number < 0 || mode_number > 2)
    return std::nullopt;
  model::search_position pos{static_cast<search_mode>(mode_number), j[2].get<std::string>(),
                             j[3].get<std::string>()};
  if ((pos.mode == search_mode::none) == q.has_text())
    return std::nullopt;
  if (!core::is_valid_id(pos.id, "prod"))
    return std::nullopt;
  switch (key_of(q, pos.mode)) {
    case key_kind::none:
      if (!pos.key.empty())
        return std::nullopt;
      break;
    case key_kind::price:
      if (!parse_price(pos.key))
        return std::nullopt;
      break;
    case key_kind::score:
      if (!valid_score(pos.key))
        return std::nullopt;
      break;
  }
  return pos;
}

result<model::search_query> decode_query(
  const std::vector<std::pair<std::string, std::string>>& params, std::string_view key) {
  static const std::set<std::string> known{"q",        "category", "min_price", "max_price",
                                           "in_stock", "sort",     "limit",     "cursor"};
  std::vector<field_error> errs;
  std::set<std::string> seen;
  const std::string* cursor = nullptr;
  model::search_query q;
  for (const auto& [name, value] : params) {
    if (!known.count(name)) {
      errs.push_back({name, "is not a known query parameter"});
      continue;
    }
    if (name != "category" && !seen.insert(name).second) {
      errs.push_back({name, "must be given at most once"});
      continue;
    }
    std::size_t chars = 0;
    if (!valid_utf8(value, chars) || value.find('\0') != std::string::npos) {
      errs.push_back({name, "must be valid UTF-8 text"});
      continue;
    }
    if (name == "q") {
      q.text = normalise(value);
      if (q.text.empty()) {
        errs.push_back({"q", "must not be empty"});
      } else if (chars > max_text_chars) {
        errs.push_back({"q", "must be at most " + std::to_string(max_text_chars) + " characters"});
      } else {
        q.words = words_of(q.text);
        if (q.words.size() > max_words)
          errs.push_back({"q", "must have at most " + std::to_string(max_words) + " words"});
      }
    } else if (name == "category") {
      if (!is_slug(value))
        errs.push_back({"category", "must be 1 to 64 lower-case letters, digits, '-' or '_'"});
      else
        q.categories.push_back(value);
    } else if (name == "min_price" || name == "max_price") {
      auto v = parse_price(value);
      if (!v)
        errs.push_back({name, "must be an integer from 0 to " + std::to_string(max_price_cents)
                                + " (minor units)"});
      else
        (name == "min_price" ? q.min_price : q.max_price) = *v;
    } else if (name == "in_stock") {
      if (value == "true" || value == "false")
        q.in_stock = value == "true";
      else
        errs.push_back({"in_stock", "must be true or false"});
    } else if (name == "sort") {
      if (auto s = parse_sort(value))
        q.sort = *s;
      else
        errs.push_back({"sort", "must be one of relevance, price_asc, price_desc, newest"});
    } else if (name == "limit") {
      std::int32_t v = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc{} || ptr != value.data() + value.size() || v < 1 || v > 100)
        errs.push_back({"limit", "must be an integer from 1 to 100"});
      else
        q.limit = v;
    } else if (name == "cursor") {
      cursor = &value;
    }
  }
  std::sort(q.categories.begin(), q.categories.end());
  q.categories.erase(std::unique(q.categories.begin(), q.categories.end()), q.categories.end());
  if (q.categories.size() > max_categories)
    errs.push_back(
      {"category", "may be given at most " + std::to_string(max_categories) + " times"});
  if (q.min_price && q.max_price && *q.min_price > *q.max_price)
    errs.push_back({"min_price", "must not be greater than max_price"});
  // The cursor is checked against the query it claims to page, so only a valid query's.
  if (cursor && errs.empty()) {
    if (auto pos = decode_cursor(*cursor, q, key))
      q.after = std::move(*pos);
    else
      errs.push_back({"cursor", "is not a cursor this server issued for this query"});
  }
  if (!errs.empty())
    return failure{errc::invalid_input, "invalid search parameters", std::move(errs)};
  return q;
}

std::string snippet_html(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() + 32);
  for (char c : raw) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      case '\x01': out += "<mark>"; break;
      case '\x02': out += "</mark>"; break;
      default: out += c;
    }
  }
  return out;
}

std::string encode(const model::search_result& r, const model::search_query& q,
                   std::string_view key) {
  json items = json::array();
  for (const auto& h : r.items)
    items.push_back(json{{"id", h.id},
                         {"sku", h.sku},
                         {"name", h.name},
                         {"price_cents", h.price_cents},
                         {"currency", h.currency},
                         {"category", h.category},
                         {"in_stock", h.in_stock},
                         {"snippet", snippet_html(h.snippet)},
                         {"created_at", persistence::format_rfc3339(h.created_at_ms)}});
  json bands = json::array();
  for (const auto& b : r.price_bands)
    bands.push_back(
      json{{"min", b.min}, {"max", b.max ? json(*b.max) : json()}, {"count", b.count}});
  json j{{"items", std::move(items)},
         {"next_cursor", r.next ? json(encode_cursor(q, *r.next, key)) : json()},
         {"facets", json{{"category", r.category_counts}, {"price", std::move(bands)}}},
         {"total", r.total},
         {"total_is_estimate", r.total_is_estimate},
         {"facets_are_estimate", r.facets_are_estimate},
         {"match", mode_name(r.mode)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace emporium::http::search_codec
