#include "persistence/cart_store.hpp"

#include "persistence/pg.hpp"

#include <nlohmann/json.hpp>

namespace emporium::persistence::cart_store {

namespace {

using json = nlohmann::json;

#define EMPORIUM_MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

#define EMPORIUM_CART_COLUMNS                                                                     \
  "id, customer_id, items::text, order_id, version, " EMPORIUM_MS("updated_at") ", " EMPORIUM_MS( \
    "expires_at")

// Safe to run twice: run again with the same id after its commit was lost with the connection,
// it answers the cart the first run made (the DO UPDATE changes nothing; it is there so that
// RETURNING has the row).
constexpr const char* insert_cart_sql =
  "INSERT INTO carts AS c (id, customer_id, expires_at) VALUES ($1, $2, now() + "
  "make_interval(secs => $3)) ON CONFLICT (id) DO UPDATE SET expires_at = c.expires_at "
  "WHERE c.customer_id = excluded.customer_id RETURNING " EMPORIUM_CART_COLUMNS;

constexpr const char* select_cart_sql = "SELECT " EMPORIUM_CART_COLUMNS
                                        " FROM carts WHERE id = $1 AND expires_at > now()";

// Safe to run twice: run again after its commit was lost with the connection (the cart is at
// $3 + 1 with these very items), it changes nothing but the expiry and answers the cart as the
// first run left it. (SET's expressions read the row as it was before this statement.)
constexpr const char* update_cart_sql =
  "UPDATE carts SET items = $2::jsonb, "
  "version = CASE WHEN version = $3 THEN version + 1 ELSE version END, "
  "updated_at = CASE WHEN version = $3 THEN now() ELSE updated_at END, "
  "expires_at = now() + make_interval(secs => $4) "
  "WHERE id = $1 AND (version = $3 OR (version = $3 + 1 AND items = $2::jsonb)) "
  "AND order_id IS NULL AND expires_at > now() RETURNING " EMPORIUM_CART_COLUMNS;

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

} // namespace

model::cart insert_cart(pqxx::transaction_base& tx, const std::string& id,
                        const std::string& customer_id, int ttl_s) {
  return cart_from(
    exec_prepared(tx, "cart.insert_cart", insert_cart_sql, id, customer_id, ttl_s).at(0));
}

std::optional<model::cart> find_cart(pqxx::transaction_base& tx, const std::string& id) {
  auto rows = exec_prepared(tx, "cart.select_cart", select_cart_sql, id);
  if (rows.empty())
    return std::nullopt;
  return cart_from(rows[0]);
}

std::optional<model::cart> save_cart_items(pqxx::transaction_base& tx, const model::cart& c,
                                           std::int64_t expected_version, int ttl_s) {
  json items = json::array();
  for (const auto& it : c.items)
    items.push_back({{"product_id", it.product_id}, {"quantity", it.quantity}});
  auto rows = exec_prepared(tx, "cart.update_cart", update_cart_sql, c.id, items.dump(),
                            expected_version, ttl_s);
  if (rows.empty())
    return std::nullopt;
  return cart_from(rows[0]);
}

} // namespace emporium::persistence::cart_store
