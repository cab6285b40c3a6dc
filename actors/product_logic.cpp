#include "actors/product_logic.hpp"

#include <algorithm>
#include <cctype>

namespace emporium::actors::product_logic {

std::vector<field_error> check(const model::product& p) {
  std::vector<field_error> errs;
  auto bad = [&errs](const char* field, const char* msg) { errs.push_back({field, msg}); };
  if (p.sku.empty() || p.sku.size() > 64)
    bad("sku", "must be 1 to 64 characters");
  if (p.name.empty() || p.name.size() > 200)
    bad("name", "must be 1 to 200 characters");
  if (p.description.size() > 10'000)
    bad("description", "must be at most 10000 characters");
  if (p.price_cents < 0 || p.price_cents > 100'000'000'00LL)
    bad("price_cents", "must be between 0 and 10000000000");
  if (p.currency.size() != 3 || !std::all_of(p.currency.begin(), p.currency.end(), [](char c) {
        return c >= 'A' && c <= 'Z';
      }))
    bad("currency", "must be three upper-case letters (ISO 4217)");
  if (p.category.empty() || p.category.size() > 64)
    bad("category", "must be 1 to 64 characters");
  if (p.stock < 0 || p.stock > 1'000'000'000)
    bad("stock", "must be between 0 and 1000000000");
  if (p.weight_grams < 0 || p.weight_grams > 1'000'000'000)
    bad("weight_grams", "must be between 0 and 1000000000");
  if (p.images.size() > 20)
    bad("images", "must hold at most 20 entries");
  return errs;
}

model::product from_draft(const std::string& id, const model::product_draft& d) {
  model::product p;
  p.id = id;
  p.sku = d.sku;
  p.name = d.name;
  p.description = d.description;
  p.price_cents = d.price_cents;
  p.currency = d.currency;
  p.category = d.category;
  p.stock = d.stock;
  p.weight_grams = d.weight_grams;
  p.images = d.images;
  return p;
}

model::product apply(model::product p, const model::product_patch& patch) {
  if (patch.sku)
    p.sku = *patch.sku;
  if (patch.name)
    p.name = *patch.name;
  if (patch.description)
    p.description = *patch.description;
  if (patch.price_cents)
    p.price_cents = *patch.price_cents;
  if (patch.currency)
    p.currency = *patch.currency;
  if (patch.category)
    p.category = *patch.category;
  if (patch.stock)
    p.stock = *patch.stock;
  if (patch.weight_grams)
    p.weight_grams = *patch.weight_grams;
  if (patch.images)
    p.images = *patch.images;
  return p;
}

bool version_matches(const model::product& current, std::int64_t expected_version) {
  return expected_version == 0 || current.version == expected_version;
}

} // namespace emporium::actors::product_logic
