#include "persistence/cart_store.hpp"

#include "persistence/pg.hpp"

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string_view>

namespace emporium::persistence::cart_store {

namespace {

using json = nlohmann::json;

#define EMPORIUM_MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

#define EMPORIUM_CART_COLUMNS                                                                     \
  "id, customer_id, items::text, order_id, version, " EMPORIUM_MS("updated_at") ", " EMPORIUM_MS( \
    "expires_at")

// Safe to run twice: run again with the same ids after its commit was lost with the connection,
// it answers the carts the first run made (the DO UPDATE changes nothing; it is there so that
// RETURNING has the row; a cart whose id is another customer's has none).
constexpr const char* insert_carts_sql =
  "INSERT INTO carts AS c (id, customer_id, expires_at) "
  "SELECT n.id, n.customer_id, now() + make_interval(secs => $3) "
  "FROM unnest($1::text[], $2::text[]) AS n(id, customer_id) "
  "ON CONFLICT (id) DO UPDATE SET expires_at = c.expires_at "
  "WHERE c.customer_id = excluded.customer_id RETURNING " EMPORIUM_CART_COLUMNS;

constexpr const char* select_cart_sql = "SELECT " EMPORIUM_CART_COLUMNS
                                        " FROM carts WHERE id = $1 AND expires_at > now()";

// Each cart is written if it is at its expected version. Safe to run twice: run again after its
// commit was lost with the connection (a cart is at its version + 1 with these very items), it
// changes nothing but the expiry and answers the cart as the first run left it. (SET's
// expressions read the row as it was before this statement.) The ids must be distinct: a row
// joined twice would be written once, by either.
constexpr const char* update_carts_sql =
  "UPDATE carts AS c SET items = s.new_items, "
  "version = CASE WHEN c.version = s.expected THEN c.version + 1 ELSE c.version END, "
  "updated_at = CASE WHEN c.version = s.expected THEN now() ELSE c.updated_at END, "
  "expires_at = now() + make_interval(secs => $4) "
  "FROM unnest($1::text[], $2::jsonb[], $3::bigint[]) AS s(cart_id, new_items, expected) "
  "WHERE c.id = s.cart_id "
  "AND (c.version = s.expected OR (c.version = s.expected + 1 AND c.items = s.new_items)) "
  "AND c.order_id IS NULL AND c.expires_at > now() "
  "RETURNING c.id, c.customer_id, c.items::text, c.order_id, c.version, " EMPORIUM_MS(
    "c.updated_at") ", " EMPORIUM_MS("c.expires_at");

model::cart cart_from(const pqxx::row& r) {
  model::cart c;
  c.id = r[0].as<std::string>();
  c.customer_id = r[1].as<std::string>();
  auto items = json::parse(r[2].as<std::string>(), nullptr, false);
  if (items.is_array())
    for (const auto& it : items)
      c.items.push_back({it.value("product_id", ""), it.value("quantity", std::int64_t{0})});
  if (!r[3].is_null())
    c.order_id = r[3].as<std::string>();
  c.version = r[4].as<std::int64_t>();
  c.updated_at_ms = r[5].as<std::int64_t>();
  c.expires_at_ms = r[6].as<std::int64_t>();
  return c;
}

/// A cart's items as the JSON array its `items` column holds.
std::string items_json(const model::cart& c) {
  json items = json::array();
  for (const auto& it : c.items)
    items.push_back({{"product_id", it.product_id}, {"quantity", it.quantity}});
  return items.dump();
}

} // namespace

std::vector<std::optional<model::cart>> insert_carts(pqxx::transaction_base& tx,
                                                     const std::vector<const new_cart*>& carts,
                                                     int ttl_s) {
  std::vector<std::optional<model::cart>> out(carts.size());
  for (const auto& run :
       distinct_runs(carts, [](const new_cart* c) -> std::string_view { return c->id; })) {
    std::vector<std::string> ids;
    std::vector<std::string> customers;
    for (auto i : run) {
      ids.push_back(carts[i]->id);
      customers.push_back(carts[i]->customer_id);
    }
    auto rows = by_id(exec_prepared(tx, "cart.insert_carts", insert_carts_sql, text_array(ids),
                                    text_array(customers), ttl_s),
                      cart_from);
    for (auto i : run)
      if (auto it = rows.find(carts[i]->id); it != rows.end())
        out[i] = it->second;
  }
  return out;
}

std::vector<std::optional<model::cart>> save_carts_items(
  pqxx::transaction_base& tx, const std::vector<const model::cart*>& carts, int ttl_s) {
  std::vector<std::optional<model::cart>> out(carts.size());
  for (const auto& run :
       distinct_runs(carts, [](const model::cart* c) -> std::string_view { return c->id; })) {
    std::vector<std::string> ids;
    std::vector<std::string> items;
    std::vector<std::int64_t> versions;
    for (auto i : run) {
      ids.push_back(carts[i]->id);
      items.push_back(items_json(*carts[i]));
      versions.push_back(carts[i]->version);
    }
    auto rows = by_id(exec_prepared(tx, "cart.update_carts", update_carts_sql, text_array(ids),
                                    text_array(items), int_array(versions), ttl_s),
                      cart_from);
    for (auto i : run)
      if (auto it = rows.find(carts[i]->id); it != rows.end())
        out[i] = it->second;
  }
  return out;
}

model::cart insert_cart(pqxx::transaction_base& tx, const std::string& id,
                        const std::string& customer_id, int ttl_s) {
  new_cart c{id, customer_id};
  auto made = insert_carts(tx, {&c}, ttl_s).front();
  if (!made)
    throw std::runtime_error("cart id " + id + " belongs to another customer");
  return std::move(*made);
}

std::optional<model::cart> find_cart(pqxx::transaction_base& tx, const std::string& id) {
  auto rows = exec_prepared(tx, "cart.select_cart", select_cart_sql, id);
  if (rows.empty())
    return std::nullopt;
  return cart_from(rows[0]);
}

std::optional<model::cart> save_cart_items(pqxx::transaction_base& tx, const model::cart& c,
                                           std::int64_t expected_version, int ttl_s) {
  auto at = c;
  at.version = expected_version;
  return std::move(save_carts_items(tx, {&at}, ttl_s).front());
}

} // namespace emporium::persistence::cart_store
