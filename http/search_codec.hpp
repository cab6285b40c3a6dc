#pragma once
/// GET /search at the edge: its query parameters validated into a search query, its answer as
/// JSON, and its cursors: opaque, signed with HMAC-SHA256 and bound to the query they page, so
/// that a cursor the server did not issue, or issued for another query, is rejected (400).

#include "core/model.hpp"
#include "core/search_model.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace emporium::http::search_codec {

/// Limits of the query (validation and the OpenAPI document both use them).
inline constexpr std::size_t max_text_chars = 200;
inline constexpr std::size_t max_words = 16;
inline constexpr std::size_t max_categories = 20;
inline constexpr std::int64_t max_price_cents = 10'000'000'000LL;

/// The key cursors are signed with, derived from a secret every node of a cluster shares
/// (the admin key's hash): a cursor issued by one node pages on another, and after a restart.
std::string cursor_key(std::string_view secret);

/// Validates the parameters of GET /search; every problem names its parameter.
result<model::search_query> decode_query(
  const std::vector<std::pair<std::string, std::string>>& params, std::string_view key);

/// The answer's JSON.
std::string encode(const model::search_result& r, const model::search_query& q,
                   std::string_view key);

/// The cursor of `pos` for query `q`, and back: nothing when it was not signed with `key` for
/// this query, or is malformed.
std::string encode_cursor(const model::search_query& q, const model::search_position& pos,
                          std::string_view key);
std::optional<model::search_position> decode_cursor(std::string_view cursor,
                                                    const model::search_query& q,
                                                    std::string_view key);

/// A snippet as HTML: the text escaped, the matches (between \x01 and \x02) in <mark>.
std::string snippet_html(std::string_view raw);

} // namespace emporium::http::search_codec
