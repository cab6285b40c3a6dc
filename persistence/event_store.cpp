#include "persistence/event_store.hpp"
#include "persistence/pg.hpp"

#include <charconv>

namespace emporium::persistence::event_store {

namespace {

constexpr const char* product_head_sql = "SELECT event_seq FROM products WHERE id = $1";
constexpr const char* order_head_sql = "SELECT event_seq, customer_id FROM orders WHERE id = $1";
constexpr const char* product_heads_sql =
  "SELECT id, event_seq FROM products WHERE id = ANY($1::text[])";
constexpr const char* order_heads_sql =
  "SELECT id, event_seq FROM orders WHERE id = ANY($1::text[])";
constexpr const char* events_after_sql =
  "SELECT seq, type, payload::text FROM events WHERE entity = $1 AND seq > $2 "
  "ORDER BY seq LIMIT $3";
constexpr const char* oldest_sql = "SELECT min(seq) FROM events WHERE entity = $1";

} // namespace

std::optional<head> read_head(pqxx::transaction_base& tx, const model::feed_topic& topic) {
  if (topic.k == model::feed_topic::kind::product) {
    auto rows = tx.exec_params(product_head_sql, topic.id);
    if (rows.empty())
      return std::nullopt;
    return head{rows[0][0].as<std::int64_t>(), {}};
  }
  auto rows = tx.exec_params(order_head_sql, topic.id);
  if (rows.empty())
    return std::nullopt;
  return head{rows[0][0].as<std::int64_t>(), rows[0][1].as<std::string>()};
}

std::vector<std::pair<std::string, std::int64_t>> read_heads(
  pqxx::transaction_base& tx, const std::vector<model::feed_topic>& topics) {
  std::vector<std::string> products;
  std::vector<std::string> orders;
  for (const auto& t : topics)
    (t.k == model::feed_topic::kind::product ? products : orders).push_back(t.id);
  std::vector<std::pair<std::string, std::int64_t>> out;
  if (!products.empty())
    for (const auto& r : tx.exec_params(product_heads_sql, text_array(products)))
      out.emplace_back("product:" + r[0].as<std::string>(), r[1].as<std::int64_t>());
  if (!orders.empty())
    for (const auto& r : tx.exec_params(order_heads_sql, text_array(orders)))
      out.emplace_back("order:" + r[0].as<std::string>(), r[1].as<std::int64_t>());
  return out;
}

std::vector<stored_event> read_after(pqxx::transaction_base& tx, const std::string& entity,
                                     std::int64_t after, int limit) {
  std::vector<stored_event> out;
  for (const auto& r : tx.exec_params(events_after_sql, entity, after, limit))
    out.push_back(
      {entity, r[0].as<std::int64_t>(), r[1].as<std::string>(), r[2].as<std::string>()});
  return out;
}

std::optional<std::int64_t> oldest_seq(pqxx::transaction_base& tx, const std::string& entity) {
  auto rows = tx.exec_params(oldest_sql, entity);
  if (rows.empty() || rows[0][0].is_null())
    return std::nullopt;
  return rows[0][0].as<std::int64_t>();
}

std::optional<stored_event> parse_notification(std::string_view text) {
  auto t1 = text.find('\t');
  if (t1 == std::string_view::npos || t1 == 0)
    return std::nullopt;
  auto t2 = text.find('\t', t1 + 1);
  if (t2 == std::string_view::npos)
    return std::nullopt;
  auto t3 = text.find('\t', t2 + 1);
  if (t3 == std::string_view::npos || t3 == t2 + 1 || t3 + 1 >= text.size())
    return std::nullopt;
  stored_event e;
  auto seq = text.substr(t1 + 1, t2 - t1 - 1);
  auto [end, ec] = std::from_chars(seq.data(), seq.data() + seq.size(), e.seq);
  if (ec != std::errc{} || end != seq.data() + seq.size() || seq.empty() || e.seq < 1)
    return std::nullopt;
  e.entity = std::string{text.substr(0, t1)};
  e.type = std::string{text.substr(t2 + 1, t3 - t2 - 1)};
  e.payload = std::string{text.substr(t3 + 1)};
  return e;
}

} // namespace emporium::persistence::event_store
