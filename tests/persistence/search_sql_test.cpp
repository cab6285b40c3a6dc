// The pgbench scripts of bench/search run "the same SQL" as Emporium's search: this checks that
// each holds, verbatim, the statements persistence/search_store.cpp sends for its class of
// queries, with the parameters bound as the script binds them. When it fails, copy the
// statement printed here into the script.

#include "persistence/search_store.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using namespace emporium;
namespace ss = emporium::persistence::search_store;
using model::search_mode;
using model::search_sort;

namespace {

struct script {
  const char* file;
  std::vector<std::pair<search_mode, search_sort>> pages; ///< statements, in order
  std::array<const char*, 9> params;                      ///< what $1..$9 are bound to
};

const std::array<const char*, 9> text_only{":words", ":text", "NULL", "NULL", "NULL",
                                           "NULL",   ":lim",  "NULL", "NULL"};

std::string read(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string bind(std::string sql, const std::array<const char*, 9>& params) {
  for (int i = 9; i >= 1; --i) {
    auto name = "$" + std::to_string(i);
    for (auto pos = sql.find(name); pos != std::string::npos; pos = sql.find(name, pos))
      sql.replace(pos, name.size(), params[static_cast<std::size_t>(i - 1)]);
  }
  return sql;
}

} // namespace

TEST_CASE("bench/search's pgbench scripts hold the statements search sends", "[unit][search]") {
  auto with = [](std::array<const char*, 9> p, std::size_t i, const char* v) {
    p[i] = v;
    return p;
  };
  const std::vector<script> scripts{
    {"noun.sql", {{search_mode::full_text, search_sort::relevance}}, text_only},
    {"modifier_noun.sql", {{search_mode::full_text, search_sort::relevance}}, text_only},
    {"noun_category.sql",
     {{search_mode::full_text, search_sort::relevance}},
     with(text_only, 2, ":cats")},
    {"noun_price.sql",
     {{search_mode::full_text, search_sort::relevance}},
     with(with(text_only, 3, ":lo"), 4, ":hi")},
    {"modifier_in_stock_price_asc.sql",
     {{search_mode::full_text, search_sort::price_asc}},
     with(text_only, 5, "true")},
    {"modifier_in_stock_price_desc.sql",
     {{search_mode::full_text, search_sort::price_desc}},
     with(text_only, 5, "true")},
    {"category_newest.sql",
     {{search_mode::none, search_sort::newest}},
     {"'{}'", "''", ":cats", "NULL", "NULL", "NULL", ":lim", "NULL", "NULL"}},
    {"misspelt.sql",
     {{search_mode::full_text, search_sort::relevance},
      {search_mode::fuzzy, search_sort::relevance}},
     text_only},
  };
  for (const auto& s : scripts) {
    auto text = read(std::string{EMPORIUM_SOURCE_DIR} + "/bench/search/pgbench/" + s.file);
    INFO(s.file);
    REQUIRE_FALSE(text.empty());
    CHECK(text.find("BEGIN READ ONLY;\n" + ss::settings_statement() + ";\n") != std::string::npos);
    auto at = text.find(ss::settings_statement());
    std::size_t categories = std::string{s.params[2]} == "NULL" ? 0 : 1;
    for (const auto& [mode, sort] : s.pages) {
      auto statement = bind(ss::page_statement(mode, sort, categories), s.params) + ";\n";
      auto found = text.find(statement, at);
      INFO("expected statement:\n" << statement);
      CHECK(found != std::string::npos);
      at = found;
    }
    CHECK(text.find("COMMIT;", at) != std::string::npos);
  }
}
