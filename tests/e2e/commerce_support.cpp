#include "e2e/commerce_support.hpp"

#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

namespace emporium::test {

using json = nlohmann::json;

header_map admin() {
  return {{"Authorization", admin_bearer()}};
}

header_map with(header_map h, const std::string& name, const std::string& value) {
  h[name] = value;
  return h;
}

std::string show(const http_response& r) {
  return std::to_string(r.status) + " " + r.body;
}

json address(const std::string& country) {
  return json{{"name", "Ada Lovelace"}, {"line1", "1 Analytical Way"}, {"city", "Springfield"},
              {"postal_code", "12345"}, {"country", country}};
}

json order_body(const std::vector<std::pair<std::string, int>>& lines, const std::string& country) {
  json items = json::array();
  for (const auto& [id, qty] : lines)
    items.push_back({{"product_id", id}, {"quantity", qty}});
  return json{{"items", items}, {"shipping_address", address(country)}};
}

json check_problem(const http_response& r, int status) {
  INFO("answer: " << show(r));
  REQUIRE(r.status == status);
  CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
  auto j = json::parse(r.body, nullptr, false);
  REQUIRE(j.is_object());
  CHECK(j.value("status", json()) == status);
  CHECK(j.value("title", json()).is_string());
  CHECK(j.value("detail", json()).is_string());
  return j;
}

bool names_field(const json& problem, const std::string& field) {
  for (const auto& e : problem.value("errors", json::array()))
    if (e.value("field", "") == field)
      return true;
  return false;
}

} // namespace emporium::test
