#include "persistence/product_store.hpp"

#include <nlohmann/json.hpp>

namespace emporium::persistence::product_store {

namespace {

#define EMPORIUM_PRODUCT_COLUMNS                                                       \
  "id, sku, name, description, price_cents, currency, category, stock, weight_grams, " \
  "images::text, version, (extract(epoch FROM created_at) * 1000)::bigint, "           \
  "(extract(epoch FROM updated_at) * 1000)::bigint"

constexpr const char* select_by_id = "SELECT " EMPORIUM_PRODUCT_COLUMNS
                                     " FROM products WHERE id = $1";

constexpr const char* select_by_ids = "SELECT " EMPORIUM_PRODUCT_COLUMNS
                                      " FROM products WHERE id = ANY($1::text[])";

constexpr const char* insert_product =
  "INSERT INTO products (id, sku, name, description, price_cents, currency, category, stock, "
  "weight_grams, images) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) "
  "RETURNING " EMPORIUM_PRODUCT_COLUMNS;

constexpr const char* update_product =
  "UPDATE products SET sku = $2, name = $3, description = $4, price_cents = $5, currency = $6, "
  "category = $7, stock = $8, weight_grams = $9, images = $10::jsonb, version = version + 1, "
  "updated_at = now() WHERE id = $1 AND version = $11 RETURNING " EMPORIUM_PRODUCT_COLUMNS;

constexpr const char* list_all = "SELECT " EMPORIUM_PRODUCT_COLUMNS
                                 " FROM products WHERE id > $1 ORDER BY id LIMIT $2";

constexpr const char* list_in_category =
  "SELECT " EMPORIUM_PRODUCT_COLUMNS
  " FROM products WHERE category = $3 AND id > $1 ORDER BY id LIMIT $2";

#undef EMPORIUM_PRODUCT_COLUMNS

std::vector<std::string> images_from_json(const std::string& text) {
  std::vector<std::string> out;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_array())
    for (auto& x : j)
      if (x.is_string())
        out.push_back(x.get<std::string>());
  return out;
}

std::string images_to_json(const std::vector<std::string>& images) {
  return nlohmann::json(images).dump();
}

model::product from_row(const pqxx::row& r) {
  model::product p;
  p.id = r[0].as<std::string>();
  p.sku = r[1].as<std::string>();
  p.name = r[2].as<std::string>();
  p.description = r[3].as<std::string>();
  p.price_cents = r[4].as<std::int64_t>();
  p.currency = r[5].as<std::string>();
  p.category = r[6].as<std::string>();
  p.stock = r[7].as<std::int64_t>();
  p.weight_grams = r[8].as<std::int64_t>();
  p.images = images_from_json(r[9].as<std::string>());
  p.version = r[10].as<std::int64_t>();
  p.created_at_ms = r[11].as<std::int64_t>();
  p.updated_at_ms = r[12].as<std::int64_t>();
  return p;
}

} // namespace

std::optional<model::product> find(pqxx::transaction_base& tx, const std::string& id) {
  auto rows = exec_prepared(tx, "product.select_by_id", select_by_id, id);
  if (rows.empty())
    return std::nullopt;
  return from_row(rows[0]);
}

model::product insert(pqxx::transaction_base& tx, const std::string& id,
                      const model::product_draft& d) {
  auto rows = exec_prepared(tx, "product.insert_product", insert_product, id, d.sku, d.name,
                            d.description, d.price_cents, d.currency, d.category, d.stock,
                            d.weight_grams, images_to_json(d.images));
  return from_row(rows.at(0));
}

std::optional<model::product> update(pqxx::transaction_base& tx, const model::product& p,
                                     std::int64_t expected_version) {
  auto rows = exec_prepared(tx, "product.update_product", update_product, p.id, p.sku, p.name,
                            p.description, p.price_cents, p.currency, p.category, p.stock,
                            p.weight_grams, images_to_json(p.images), expected_version);
  if (rows.empty())
    return std::nullopt;
  return from_row(rows[0]);
}

model::product_page list(pqxx::transaction_base& tx, const model::product_query& q) {
  model::product_page page;
  if (q.limit < 1)
    return page;
  // One row more than asked tells whether another page exists without a count.
  auto after = q.after_id.value_or("");
  auto fetch = q.limit + 1;
  auto rows = q.category ? tx.exec_params(list_in_category, after, fetch, *q.category)
                         : tx.exec_params(list_all, after, fetch);
  for (const auto& r : rows) {
    if (static_cast<std::int32_t>(page.items.size()) == q.limit) {
      page.next_after_id = page.items.back().id;
      break;
    }
    page.items.push_back(from_row(r));
  }
  return page;
}

std::vector<std::optional<model::product>> load_many(backend& b,
                                                     const std::vector<const std::string*>& ids) {
  std::vector<std::string> wanted;
  wanted.reserve(ids.size());
  for (const auto* id : ids)
    wanted.push_back(*id);
  // One statement: no BEGIN, SET TRANSACTION READ ONLY and COMMIT (three round trips of four).
  pqxx::nontransaction tx{b.pg.connection()};
  auto found = by_id(exec_prepared(tx, "product.select_by_ids", select_by_ids, text_array(wanted)),
                     from_row);
  std::vector<std::optional<model::product>> out;
  out.reserve(ids.size());
  for (const auto* id : ids)
    if (auto it = found.find(*id); it != found.end())
      out.emplace_back(it->second);
    else
      out.emplace_back(std::nullopt);
  return out;
}

} // namespace emporium::persistence::product_store
