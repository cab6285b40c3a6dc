#include "actors/product_logic.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace emporium;
using namespace emporium::actors;

namespace {

model::product valid_product() {
  model::product_draft d;
  d.sku = "LAMP-1";
  d.name = "Desk Lamp";
  d.price_cents = 2599;
  d.currency = "EUR";
  d.stock = 3;
  auto p = product_logic::from_draft("prod_x", d);
  p.version = 4;
  return p;
}

bool names(const std::vector<field_error>& errs, const std::string& field) {
  return std::any_of(errs.begin(), errs.end(), [&](const auto& e) { return e.field == field; });
}

} // namespace

TEST_CASE("a product built from a draft keeps the draft's fields and defaults") {
  auto p = valid_product();
  CHECK(p.id == "prod_x");
  CHECK(p.sku == "LAMP-1");
  CHECK(p.category == "uncategorized");
  CHECK(p.description.empty());
  CHECK(p.weight_grams == 0);
  CHECK(product_logic::check(p).empty());
}

TEST_CASE("check names every broken invariant") {
  auto p = valid_product();
  p.price_cents = -1;
  p.stock = -5;
  p.currency = "eur";
  p.name = "";
  auto errs = product_logic::check(p);
  CHECK(errs.size() == 4);
  CHECK(names(errs, "price_cents"));
  CHECK(names(errs, "stock"));
  CHECK(names(errs, "currency"));
  CHECK(names(errs, "name"));

  p = valid_product();
  p.images.assign(21, "https://x/y.jpg");
  CHECK(names(product_logic::check(p), "images"));
  p = valid_product();
  p.sku = std::string(65, 'A');
  CHECK(names(product_logic::check(p), "sku"));
}

TEST_CASE("apply changes exactly the engaged fields and leaves the version") {
  auto p = valid_product();
  model::product_patch patch;
  patch.price_cents = 1999;
  patch.images = std::vector<std::string>{"https://img/1.jpg"};
  auto next = product_logic::apply(p, patch);
  CHECK(next.price_cents == 1999);
  CHECK(next.images == std::vector<std::string>{"https://img/1.jpg"});
  CHECK(next.name == p.name);
  CHECK(next.stock == p.stock);
  CHECK(next.sku == p.sku);
  CHECK(next.version == p.version);

  model::product_patch all;
  all.sku = "S";
  all.name = "N";
  all.description = "D";
  all.currency = "USD";
  all.category = "c";
  all.stock = 0;
  all.weight_grams = 7;
  auto n2 = product_logic::apply(p, all);
  CHECK(n2.sku == "S");
  CHECK(n2.name == "N");
  CHECK(n2.description == "D");
  CHECK(n2.currency == "USD");
  CHECK(n2.category == "c");
  CHECK(n2.stock == 0);
  CHECK(n2.weight_grams == 7);
  CHECK_FALSE(all.empty());
  CHECK(model::product_patch{}.empty());
}

TEST_CASE("version_matches: 0 is unconditional, otherwise exact") {
  auto p = valid_product();
  CHECK(product_logic::version_matches(p, 0));
  CHECK(product_logic::version_matches(p, 4));
  CHECK_FALSE(product_logic::version_matches(p, 3));
  CHECK_FALSE(product_logic::version_matches(p, 5));
}
