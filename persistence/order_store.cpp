#include "persistence/order_store.hpp"
#include "persistence/pg.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <unordered_map>

namespace emporium::persistence::order_store {

namespace {

using json = nlohmann::json;

#define EMPORIUM_MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

constexpr const char* return_stock_sql =
  "UPDATE products SET stock = stock + $2, version = version + 1, updated_at = now() "
  "WHERE id = $1 RETURNING stock, version";

#define EMPORIUM_ORDER_COLUMNS \
  "o.id, o.customer_id, o.status, o.currency, o.subtotal_cents, o.shipping_cents, "             \
  "o.total_cents, o.shipping_address::text, o.points_awarded, o.version, "                     \
  EMPORIUM_MS("o.created_at") ", " EMPORIUM_MS("o.updated_at") ", "                            \
  EMPORIUM_MS("o.payment_due_at") ", p.provider, p.reference, p.status"

constexpr const char* select_order_sql =
  "SELECT " EMPORIUM_ORDER_COLUMNS
  " FROM orders o LEFT JOIN payments p ON p.order_id = o.id WHERE o.id = $1";

constexpr const char* select_lines_sql =
  "SELECT order_id, product_id, name, unit_price_cents, quantity, weight_grams "
  "FROM order_lines WHERE order_id = ANY($1::text[]) ORDER BY order_id, line_no";

constexpr const char* list_orders_first_sql =
  "SELECT " EMPORIUM_ORDER_COLUMNS
  " FROM orders o LEFT JOIN payments p ON p.order_id = o.id "
  "WHERE o.customer_id = $1 ORDER BY o.id DESC LIMIT $2";

constexpr const char* list_orders_after_sql =
  "SELECT " EMPORIUM_ORDER_COLUMNS
  " FROM orders o LEFT JOIN payments p ON p.order_id = o.id "
  "WHERE o.customer_id = $1 AND o.id < $3 ORDER BY o.id DESC LIMIT $2";

constexpr const char* select_idempotency_sql =
  "SELECT request_hash, status, outcome::text FROM idempotency_keys "
  "WHERE customer_id = $1 AND key = $2";

// A row of a kind that is not replayed ($6: the replayable statuses) is taken over: it must
// not keep the key from recording the outcome of a retry.
constexpr const char* insert_idempotency_sql =
  "INSERT INTO idempotency_keys AS k (customer_id, key, request_hash, status, outcome) "
  "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (customer_id, key) DO UPDATE SET "
  "request_hash = excluded.request_hash, status = excluded.status, outcome = excluded.outcome, "
  "created_at = now() WHERE k.status <> ALL ($6::int[])";

// The statements that move an order on return what they wrote (version, updated_at_ms) and
// what else of the row can differ from the caller's copy (points_awarded): with the payment
// they record, that is the whole order as select_order_sql would read it (see stamped()).
#define EMPORIUM_ORDER_STAMP "version, " EMPORIUM_MS("updated_at") ", points_awarded"

constexpr const char* transition_sql =
  "UPDATE orders SET status = $3, version = version + 1, updated_at = now() "
  "WHERE id = $1 AND status = $2 RETURNING " EMPORIUM_ORDER_STAMP;

// The notification of the outbox row just written (in its RETURNING), which PostgreSQL sends to
// every listener when, and only if, the transaction commits: event_store::parse_notification's
// format.
#define EMPORIUM_NOTIFY_EVENT                                                            \
  "pg_notify('emporium_events', entity || E'\\t' || seq || E'\\t' || type || E'\\t' || " \
  "payload::text)"

// One statement, atomic by itself (so it needs no transaction block): marks the order paid,
// writes its payment, credits the customer's points and writes the order's outbox event, or
// does nothing at all when the order is not awaiting payment. From `paying` (the live payment or
// its reconciliation), or from `pending_payment`: a charge captured after a reconciliation had
// found none (and put the order back) still pays it. The UPDATE that marks the order paid also
// takes the event's seq from its counter (a statement may change one row once only). The
// customer exists: orders.customer_id references it. The payments primary key refuses a second
// captured payment for the same order. Several payments in one statement (record_payments): the
// orders and the customers of one run are distinct, so that each customer's points and version
// after the statement are those after its one order's credit.
constexpr const char* record_payments_sql =
  "WITH i AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], "
  "$5::bigint[], $6::text[], $7::text[], $8::jsonb[]) "
  "AS i(order_ref, points, provider_name, charge_ref, amount, currency_code, customer_ref, "
  "event_payload)), "
  "o AS (UPDATE orders SET status = 'paid', points_awarded = i.points, version = version + 1, "
  "updated_at = now(), event_seq = event_seq + 1 FROM i "
  "WHERE orders.id = i.order_ref AND orders.status IN ('paying', 'pending_payment') "
  "RETURNING orders.version, " EMPORIUM_MS("orders.updated_at") " AS updated_ms, "
  "orders.points_awarded, "
  "orders.event_seq, orders.id AS paid_id), "
  "p AS (INSERT INTO payments (order_id, provider, reference, amount_cents, currency, status) "
  "SELECT i.order_ref, i.provider_name, i.charge_ref, i.amount, i.currency_code, 'captured' "
  "FROM i JOIN o ON o.paid_id = i.order_ref), "
  "c AS (UPDATE customers SET loyalty_points = customers.loyalty_points + i.points, "
  "version = customers.version + 1 "
  "FROM i JOIN o ON o.paid_id = i.order_ref WHERE customers.id = i.customer_ref "
  "RETURNING customers.id AS credited_id, customers.loyalty_points, "
  "customers.version AS customer_version), "
  "e AS (INSERT INTO events (entity, seq, type, payload) "
  "SELECT 'order:' || i.order_ref, o.event_seq, 'order_status', i.event_payload "
  "FROM i JOIN o ON o.paid_id = i.order_ref RETURNING " EMPORIUM_NOTIFY_EVENT
  ") "
  "SELECT o.version, o.updated_ms, o.points_awarded, o.event_seq, c.loyalty_points, "
  "c.customer_version, (SELECT count(*) FROM e), o.paid_id "
  "FROM o JOIN i ON i.order_ref = o.paid_id JOIN c ON c.credited_id = i.customer_ref";

// Also when the order is paying under this very reference already: the worker runs a job again
// after its connection was lost mid-statement, and in autocommit the first run may have
// committed.
// The orders' ids must be distinct (distinct_runs).
// The status test is written so that no partial index's predicate follows from it: as
// `status = 'pending_payment' OR (status = 'paying' AND ...)` it let the planner, whenever the
// statistics said few orders await payment, scan both unpaid-order partial indexes whole
// (a BitmapOr), dead entries and all, instead of looking each order up by its key
// (bench/README.md, "Plans made on empty tables").
constexpr const char* begin_payments_sql =
  "UPDATE orders AS o SET status = 'paying', payment_reference = i.charge_ref, "
  "paying_since = now(), version = o.version + 1, updated_at = now() "
  "FROM unnest($1::text[], $2::text[]) AS i(order_ref, charge_ref) "
  "WHERE o.id = i.order_ref AND o.status IN ('pending_payment', 'paying') "
  "AND (o.status = 'pending_payment' OR o.payment_reference = i.charge_ref) "
  "RETURNING o.version, " EMPORIUM_MS("o.updated_at") ", o.points_awarded, o.id";

constexpr const char* abandon_payment_sql =
  "UPDATE orders SET status = 'pending_payment', version = version + 1, updated_at = now() "
  "WHERE id = $1 AND status = 'paying' RETURNING " EMPORIUM_ORDER_STAMP;

constexpr const char* stock_levels_sql =
  "SELECT id, stock, version FROM products WHERE id = ANY($1::text[]) ORDER BY id";

constexpr const char* debit_points_sql =
  "UPDATE customers SET loyalty_points = greatest(loyalty_points - $2, 0), "
  "version = version + 1 WHERE id = $1 RETURNING loyalty_points, version";

constexpr const char* cancel_sql =
  "UPDATE orders SET status = 'cancelled', version = version + 1, updated_at = now() "
  "WHERE id = $1 AND status = $2 RETURNING version, points_awarded";

constexpr const char* refund_sql =
  "UPDATE payments SET status = 'refunded', updated_at = now() "
  "WHERE order_id = $1 AND status = 'captured'";

constexpr const char* refunds_owed_sql =
  "SELECT order_id, reference FROM payments "
  "WHERE status = 'refunded' AND refund_confirmed_at IS NULL AND provider = $3 "
  "AND updated_at <= now() - make_interval(secs => $2::double precision / 1000 "
  "* power(2, least(refund_attempts, 12))) "
  "ORDER BY updated_at LIMIT $1";

constexpr const char* confirm_refund_sql =
  "UPDATE payments SET refund_confirmed_at = now() "
  "WHERE order_id = $1 AND reference = $2 AND status = 'refunded' "
  "AND refund_confirmed_at IS NULL";

constexpr const char* postpone_refund_sql =
  "UPDATE payments SET refund_attempts = refund_attempts + 1, updated_at = now() "
  "WHERE order_id = $1 AND reference = $2 AND status = 'refunded' "
  "AND refund_confirmed_at IS NULL";

constexpr const char* owe_refund_sql =
  "INSERT INTO payments (order_id, provider, reference, amount_cents, currency, status) "
  "VALUES ($1, $2, $3, $4, $5, 'refunded') ON CONFLICT (order_id) DO NOTHING";

constexpr const char* overdue_sql =
  "SELECT id FROM orders WHERE status = 'pending_payment' AND payment_due_at <= now() "
  "ORDER BY payment_due_at LIMIT $1";

constexpr const char* stale_paying_sql =
  "SELECT id FROM orders WHERE status = 'paying' "
  "AND paying_since <= now() - make_interval(secs => $2::double precision / 1000) "
  "ORDER BY paying_since LIMIT $1";

// One statement bumps the entity's event counter (locking its row until the commit, so events of
// one entity commit in seq order), writes the outbox row at the new value and queues its
// notification.
#define EMPORIUM_INSERT_EVENT(TABLE, PREFIX)                           \
  "WITH s AS (UPDATE " TABLE                                           \
  " SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq) " \
  "INSERT INTO events (entity, seq, type, payload) "                   \
  "SELECT '" PREFIX                                                    \
  "' || $1, s.event_seq, $2, $3::jsonb FROM s "                        \
  "RETURNING seq, " EMPORIUM_NOTIFY_EVENT
constexpr const char* insert_product_event_sql = EMPORIUM_INSERT_EVENT("products", "product:");
constexpr const char* insert_order_event_sql = EMPORIUM_INSERT_EVENT("orders", "order:");
#undef EMPORIUM_INSERT_EVENT
#undef EMPORIUM_NOTIFY_EVENT

#undef EMPORIUM_ORDER_COLUMNS
#undef EMPORIUM_CART_COLUMNS
#undef EMPORIUM_MS

json address_json(const model::address& a) {
  json j{{"name", a.name},
         {"line1", a.line1},
         {"city", a.city},
         {"postal_code", a.postal_code},
         {"country", a.country}};
  if (!a.line2.empty())
    j["line2"] = a.line2;
  if (!a.region.empty())
    j["region"] = a.region;
  return j;
}

json lines_json(const std::vector<model::order_line>& lines) {
  json out = json::array();
  for (const auto& l : lines)
    out.push_back({{"product_id", l.product_id},
                   {"name", l.name},
                   {"unit_price_cents", l.unit_price_cents},
                   {"quantity", l.quantity},
                   {"weight_grams", l.weight_grams}});
  return out;
}

/// The order as its idempotency record stores it (encode_order).
json order_json(const model::order& o) {
  json j{{"id", o.id},
         {"customer_id", o.customer_id},
         {"status", o.status},
         {"lines", lines_json(o.lines)},
         {"currency", o.currency},
         {"subtotal_cents", o.subtotal_cents},
         {"shipping_cents", o.shipping_cents},
         {"total_cents", o.total_cents},
         {"shipping_address", address_json(o.shipping_address)},
         {"points_awarded", o.points_awarded},
         {"version", o.version},
         {"created_at_ms", o.created_at_ms},
         {"updated_at_ms", o.updated_at_ms},
         {"payment_due_at_ms", o.payment_due_at_ms}};
  if (o.payment)
    j["payment"] = {{"status", o.payment->status},
                    {"provider", o.payment->provider},
                    {"reference", o.payment->reference}};
  return j;
}

model::address address_from(const json& j) {
  model::address a;
  a.name = j.value("name", "");
  a.line1 = j.value("line1", "");
  a.line2 = j.value("line2", "");
  a.city = j.value("city", "");
  a.region = j.value("region", "");
  a.postal_code = j.value("postal_code", "");
  a.country = j.value("country", "");
  return a;
}

model::order order_from(const pqxx::row& r) {
  model::order o;
  o.id = r[0].as<std::string>();
  o.customer_id = r[1].as<std::string>();
  o.status = r[2].as<std::string>();
  o.currency = r[3].as<std::string>();
  o.subtotal_cents = r[4].as<std::int64_t>();
  o.shipping_cents = r[5].as<std::int64_t>();
  o.total_cents = r[6].as<std::int64_t>();
  o.shipping_address = address_from(json::parse(r[7].as<std::string>(), nullptr, false));
  o.points_awarded = r[8].as<std::int64_t>();
  o.version = r[9].as<std::int64_t>();
  o.created_at_ms = r[10].as<std::int64_t>();
  o.updated_at_ms = r[11].as<std::int64_t>();
  o.payment_due_at_ms = r[12].as<std::int64_t>();
  if (!r[13].is_null())
    o.payment = model::payment_info{r[15].as<std::string>(), r[13].as<std::string>(),
                                    r[14].as<std::string>()};
  return o;
}

/// `o` moved to `status` by a statement that returned EMPORIUM_ORDER_STAMP in `r`. The rest of
/// an order does not change after its placement but for its payment, which only
/// record_payment (sets it) and cancel_order (refunds it) change.
model::order stamped(model::order o, const std::string& status, const pqxx::row& r) {
  o.status = status;
  o.version = r[0].as<std::int64_t>();
  o.updated_at_ms = r[1].as<std::int64_t>();
  o.points_awarded = r[2].as<std::int64_t>();
  return o;
}

void attach_lines(pqxx::transaction_base& tx, std::vector<model::order>& orders) {
  if (orders.empty())
    return;
  std::vector<std::string> ids;
  for (const auto& o : orders)
    ids.push_back(o.id);
  for (const auto& r : exec_prepared(tx, "order.select_lines", select_lines_sql, text_array(ids))) {
    auto oid = r[0].as<std::string>();
    auto it = std::find_if(orders.begin(), orders.end(),
                           [&oid](const model::order& o) { return o.id == oid; });
    if (it != orders.end())
      it->lines.push_back(model::order_line{r[1].as<std::string>(), r[2].as<std::string>(),
                                            r[3].as<std::int64_t>(), r[4].as<std::int64_t>(),
                                            r[5].as<std::int64_t>()});
  }
}

std::string order_event(const model::order& o, const std::string& status) {
  return json{{"order_id", o.id}, {"status", status}}.dump();
}

std::string stock_event(const stock_change& c) {
  return json{{"product_id", c.product_id}, {"stock", c.stock}}.dump();
}

json failure_json(const failure& f) {
  json errs = json::array();
  for (const auto& e : f.errors)
    errs.push_back({{"field", e.field}, {"message", e.message}});
  return json{{"code", static_cast<int>(f.code)}, {"detail", f.detail}, {"errors", errs}};
}

constexpr int placed_status = 201;

/// The status column of a recorded failure.
int failure_status(errc code) {
  return static_cast<int>(code) + 1000;
}

/// The statuses find_idempotent replays, as a PostgreSQL int[] literal.
const std::string& replayable_statuses() {
  static const std::string text = "{" + std::to_string(placed_status) + ","
                                  + std::to_string(failure_status(errc::invalid_input)) + ","
                                  + std::to_string(failure_status(errc::unprocessable)) + "}";
  return text;
}

failure failure_from(const json& j) {
  failure f;
  f.code = static_cast<errc>(j.value("code", static_cast<int>(errc::internal)));
  f.detail = j.value("detail", "");
  if (j.contains("errors") && j["errors"].is_array())
    for (const auto& e : j["errors"])
      f.errors.push_back({e.value("field", ""), e.value("message", "")});
  return f;
}

} // namespace

std::string placement_batch_json(const std::vector<const placement_request*>& batch) {
  json orders = json::array();
  for (const auto* r : batch) {
    // The order as its idempotency record stores it (order_json), plus how to place it; the
    // function reads what it needs by name.
    json j = order_json(r->order);
    json idem = nullptr;
    if (r->idem)
      // The stored answer is the order as placed: the function adds the version and the
      // timestamps of its row.
      idem = {{"key", r->idem->key},
              {"request_hash", r->idem->request_hash},
              {"outcome", j},
              {"replayable", json::array({placed_status, failure_status(errc::invalid_input),
                                          failure_status(errc::unprocessable)})}};
    j["idem"] = std::move(idem);
    j["max_unpaid"] = r->max_open_unpaid ? json(*r->max_open_unpaid) : json(nullptr);
    j["cart_id"] = r->cart_id ? json(*r->cart_id) : json(nullptr);
    j["cart_version"] = r->cart_version;
    orders.push_back(std::move(j));
  }
  return orders.dump();
}

std::vector<batch_outcome> place_orders(pqxx::transaction_base& tx,
                                        const std::vector<const placement_request*>& batch) {
  std::vector<batch_outcome> out;
  if (batch.empty())
    return out;
  auto text = exec_prepared(tx, "order.place_orders",
                            "SELECT emporium_place_orders($1::jsonb)::text",
                            placement_batch_json(batch))
                .at(0)[0]
                .as<std::string>();
  auto results = json::parse(text);
  if (!results.is_array() || results.size() != batch.size())
    throw std::logic_error("emporium_place_orders answered a batch of another size");
  out.resize(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const auto& r = results[i];
    auto& b = out[i];
    if (r.contains("placed")) {
      b.placed.stored = batch[i]->order;
      b.placed.stored.version = r.at("version").get<std::int64_t>();
      b.placed.stored.created_at_ms = r.at("created_at_ms").get<std::int64_t>();
      b.placed.stored.updated_at_ms = r.at("updated_at_ms").get<std::int64_t>();
      for (const auto& c : r.at("changes"))
        b.placed.changes.push_back(
          {c.at(0).get<std::string>(), c.at(1).get<std::int64_t>(), c.at(2).get<std::int64_t>()});
    } else if (r.contains("short")) {
      for (const auto& id : r.at("short"))
        b.placed.short_products.push_back(id.get<std::string>());
    } else if (r.contains("open_unpaid")) {
      b.placed.open_unpaid = r.at("open_unpaid").get<std::int64_t>();
      b.placed.over_unpaid_cap = true;
    } else {
      auto state = r.value("sqlstate", "");
      if (state == "23505")
        b.failed = failure{errc::conflict, "a unique value is already taken", {}};
      else if (state.rfind("23", 0) == 0)
        b.failed = failure{errc::conflict, "the change would violate a constraint", {}};
      else if (state.rfind("40", 0) == 0)
        b.failed = failure{
          errc::unavailable, "the database could not serialize the transaction", {}};
      else
        b.failed = failure{errc::internal, "internal database error", {}};
      b.sqlstate = state;
      b.message = r.value("message", "");
    }
  }
  return out;
}

placement place_order(pqxx::transaction_base& tx, const model::order& o,
                      const std::optional<idempotency_ref>& idem,
                      const std::optional<std::string>& cart_id, std::optional<int> max_open_unpaid,
                      std::int64_t cart_version) {
  placement_request r{o, idem, cart_id, max_open_unpaid, cart_version};
  auto outcome = std::move(place_orders(tx, {&r}).front());
  if (outcome.failed) {
    if (outcome.sqlstate == "23505")
      throw pqxx::unique_violation(outcome.message);
    throw std::runtime_error("placing order " + o.id + " failed: " + outcome.message);
  }
  return std::move(outcome.placed);
}

std::optional<model::order> find_order(pqxx::transaction_base& tx, const std::string& id) {
  auto rows = exec_prepared(tx, "order.select_order", select_order_sql, id);
  if (rows.empty())
    return std::nullopt;
  std::vector<model::order> one{order_from(rows[0])};
  attach_lines(tx, one);
  return std::move(one.front());
}

model::order_page list_orders(pqxx::transaction_base& tx, const std::string& customer_id,
                              const std::optional<std::string>& before_id, int limit) {
  if (limit < 1)
    return {};
  auto rows = before_id ? tx.exec_params(list_orders_after_sql, customer_id, limit + 1, *before_id)
                        : tx.exec_params(list_orders_first_sql, customer_id, limit + 1);
  model::order_page page;
  for (const auto& r : rows) {
    if (static_cast<int>(page.items.size()) == limit) {
      page.next_after_id = page.items.back().id;
      break;
    }
    page.items.push_back(order_from(r));
  }
  attach_lines(tx, page.items);
  return page;
}

std::optional<idempotent_outcome> find_idempotent(pqxx::transaction_base& tx,
                                                  const std::string& customer_id,
                                                  const std::string& key) {
  auto rows = exec_prepared(tx, "order.select_idempotency", select_idempotency_sql, customer_id,
                            key);
  if (rows.empty())
    return std::nullopt;
  idempotent_outcome out;
  out.request_hash = rows[0][0].as<std::string>();
  auto status = rows[0][1].as<int>();
  auto text = rows[0][2].as<std::string>();
  if (status == placed_status) {
    out.placed = decode_order(text);
    out.unreadable = !out.placed;
    return out;
  }
  if (status != failure_status(errc::invalid_input)
      && status != failure_status(errc::unprocessable))
    return std::nullopt;
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("code") || !j["code"].is_number_integer()
      || j["code"].get<int>() != status - 1000) {
    out.unreadable = true;
    return out;
  }
  try {
    out.failed = failure_from(j);
  } catch (const json::exception&) {
    out.unreadable = true;
  }
  return out;
}

bool replayable_failure(errc code) {
  return code == errc::invalid_input || code == errc::unprocessable;
}

bool store_idempotent_failure(pqxx::transaction_base& tx, const idempotency_ref& idem,
                              const failure& f) {
  if (!replayable_failure(f.code))
    return false;
  return exec_prepared(tx, "order.insert_idempotency", insert_idempotency_sql, idem.customer_id,
                       idem.key, idem.request_hash, failure_status(f.code), failure_json(f).dump(),
                       replayable_statuses())
           .affected_rows()
         == 1;
}

std::optional<model::order> transition(pqxx::transaction_base& tx, const model::order& o,
                                       const std::string& to) {
  auto rows = exec_prepared(tx, "order.transition", transition_sql, o.id, o.status, to);
  if (rows.empty())
    return std::nullopt;
  insert_event(tx, event_entity::order, o.id, "order_status",
               json{{"order_id", o.id}, {"status", to}}.dump());
  return stamped(o, to, rows[0]);
}

std::optional<paid_result> record_payment(pqxx::transaction_base& tx, const model::order& o,
                                          const model::payment_info& payment, std::int64_t points) {
  return std::move(record_payments(tx, {captured_payment{&o, payment, points}}).front());
}

std::vector<std::optional<paid_result>> record_payments(pqxx::transaction_base& tx,
                                                        const std::vector<captured_payment>& paid) {
  std::vector<std::optional<paid_result>> out(paid.size());
  auto order = [](const captured_payment& p) -> std::string_view { return p.order->id; };
  auto customer = [](const captured_payment& p) -> std::string_view {
    return p.order->customer_id;
  };
  for (const auto& run : distinct_runs(paid, order, customer)) {
    std::vector<std::string> ids, providers, references, currencies, customers, events;
    std::vector<std::int64_t> points, amounts;
    for (auto i : run) {
      const auto& o = *paid[i].order;
      ids.push_back(o.id);
      providers.push_back(paid[i].payment.provider);
      references.push_back(paid[i].payment.reference);
      currencies.push_back(o.currency);
      customers.push_back(o.customer_id);
      events.push_back(order_event(o, model::order_status::paid));
      points.push_back(paid[i].points);
      amounts.push_back(o.total_cents);
    }
    auto rows = exec_prepared(tx, "order.record_payments", record_payments_sql, text_array(ids),
                              int_array(points), text_array(providers), text_array(references),
                              int_array(amounts), text_array(currencies), text_array(customers),
                              text_array(events));
    std::unordered_map<std::string, pqxx::row> by_id;
    for (const auto& r : rows)
      by_id.emplace(r[7].as<std::string>(), r);
    for (auto i : run) {
      auto it = by_id.find(paid[i].order->id);
      if (it == by_id.end())
        continue;
      const auto& r = it->second;
      paid_result pr;
      pr.order = stamped(*paid[i].order, model::order_status::paid, r);
      pr.order.payment = paid[i].payment;
      pr.customer_points = r[4].as<std::int64_t>();
      pr.customer_version = r[5].as<std::int64_t>();
      out[i] = std::move(pr);
    }
  }
  return out;
}

std::vector<std::optional<model::order>> begin_payments(
  pqxx::transaction_base& tx, const std::vector<payment_intent>& intents) {
  std::vector<std::optional<model::order>> out(intents.size());
  auto id = [](const payment_intent& i) -> std::string_view { return i.order->id; };
  for (const auto& run : distinct_runs(intents, id)) {
    std::vector<std::string> ids;
    std::vector<std::string> references;
    for (auto i : run) {
      ids.push_back(intents[i].order->id);
      references.push_back(intents[i].reference);
    }
    std::unordered_map<std::string, pqxx::row> rows;
    auto result = exec_prepared(tx, "order.begin_payments", begin_payments_sql, text_array(ids),
                                text_array(references));
    for (const auto& r : result)
      rows.emplace(r[3].as<std::string>(), r);
    for (auto i : run)
      if (auto it = rows.find(intents[i].order->id); it != rows.end())
        out[i] = stamped(*intents[i].order, model::order_status::paying, it->second);
  }
  return out;
}

std::optional<model::order> begin_payment(pqxx::transaction_base& tx, const model::order& o,
                                          const std::string& reference) {
  return std::move(begin_payments(tx, {payment_intent{&o, reference}}).front());
}

std::optional<model::order> abandon_payment(pqxx::transaction_base& tx, const model::order& o) {
  auto rows = exec_prepared(tx, "order.abandon_payment", abandon_payment_sql, o.id);
  if (rows.empty())
    return std::nullopt;
  return stamped(o, model::order_status::pending_payment, rows[0]);
}

std::vector<stock_change> stock_levels(pqxx::transaction_base& tx,
                                       const std::vector<std::string>& product_ids) {
  std::vector<stock_change> out;
  if (product_ids.empty())
    return out;
  for (const auto& r : tx.exec_params(stock_levels_sql, text_array(product_ids)))
    out.push_back({r[0].as<std::string>(), r[1].as<std::int64_t>(), r[2].as<std::int64_t>()});
  return out;
}

std::optional<cancel_result> cancel_order(pqxx::transaction_base& tx, const model::order& o,
                                          const std::string& from) {
  auto rows = exec_prepared(tx, "order.cancel", cancel_sql, o.id, from);
  if (rows.empty())
    return std::nullopt;
  cancel_result out;
  out.order_version = rows[0][0].as<std::int64_t>();
  auto points = rows[0][1].as<std::int64_t>();
  std::vector<const model::order_line*> sorted;
  for (const auto& l : o.lines)
    sorted.push_back(&l);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return a->product_id < b->product_id; });
  for (const auto* l : sorted) {
    auto r =
      exec_prepared(tx, "order.return_stock", return_stock_sql, l->product_id, l->quantity).at(0);
    stock_change c{l->product_id, r[0].as<std::int64_t>(), r[1].as<std::int64_t>()};
    insert_event(tx, event_entity::product, c.product_id, "stock_changed", stock_event(c));
    out.changes.push_back(std::move(c));
  }
  if (from == model::order_status::paid) {
    exec_prepared(tx, "order.refund", refund_sql, o.id);
    if (points > 0) {
      auto c =
        exec_prepared(tx, "order.debit_points", debit_points_sql, o.customer_id, points).at(0);
      out.customer_points = c[0].as<std::int64_t>();
      out.customer_version = c[1].as<std::int64_t>();
    }
  }
  insert_event(tx, event_entity::order, o.id, "order_status",
               order_event(o, model::order_status::cancelled));
  return out;
}

std::vector<std::string> overdue_orders(pqxx::transaction_base& tx, int limit) {
  std::vector<std::string> ids;
  for (const auto& r : tx.exec_params(overdue_sql, limit))
    ids.push_back(r[0].as<std::string>());
  return ids;
}

std::vector<std::string> stale_payments(pqxx::transaction_base& tx, int limit,
                                        std::int64_t older_than_ms) {
  std::vector<std::string> ids;
  for (const auto& r : tx.exec_params(stale_paying_sql, limit, older_than_ms))
    ids.push_back(r[0].as<std::string>());
  return ids;
}

std::vector<owed_refund> refunds_owed(pqxx::transaction_base& tx, int limit,
                                      std::int64_t older_than_ms, const std::string& provider) {
  std::vector<owed_refund> out;
  for (const auto& r : tx.exec_params(refunds_owed_sql, limit, older_than_ms, provider))
    out.push_back({r[0].as<std::string>(), r[1].as<std::string>()});
  return out;
}

void settle_refund(pqxx::transaction_base& tx, const owed_refund& r, bool confirmed) {
  tx.exec_params(confirmed ? confirm_refund_sql : postpone_refund_sql, r.order_id, r.reference);
}

void owe_refund(pqxx::transaction_base& tx, const model::order& o, const std::string& provider,
                const std::string& reference) {
  tx.exec_params(owe_refund_sql, o.id, provider, reference, o.total_cents, o.currency);
}

std::optional<sweep_work> sweep(pqxx::transaction_base& tx, int limit, std::int64_t stale_ms,
                                const std::string& provider, int refund_limit) {
  if (!tx.exec_params("SELECT pg_try_advisory_xact_lock($1)", payment_sweep_lock_key)
         .at(0)[0]
         .as<bool>())
    return std::nullopt;
  sweep_work out;
  out.orders = stale_payments(tx, limit, stale_ms);
  auto overdue = overdue_orders(tx, limit);
  out.orders.insert(out.orders.end(), overdue.begin(), overdue.end());
  out.refunds = refunds_owed(tx, refund_limit, stale_ms, provider);
  return out;
}

std::int64_t insert_event(pqxx::transaction_base& tx, event_entity kind, const std::string& id,
                          const std::string& type, const std::string& payload_json) {
  const bool product = kind == event_entity::product;
  auto rows = exec_prepared(tx, product ? "order.insert_product_event" : "order.insert_order_event",
                            product ? insert_product_event_sql : insert_order_event_sql, id, type,
                            payload_json);
  if (rows.empty())
    throw std::logic_error("an outbox event for a row that does not exist");
  return rows[0][0].as<std::int64_t>();
}

std::string encode_order(const model::order& o) {
  return order_json(o).dump();
}

std::optional<model::order> decode_order(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object())
    return std::nullopt;
  try {
    model::order o;
    j.at("id").get_to(o.id);
    j.at("customer_id").get_to(o.customer_id);
    j.at("status").get_to(o.status);
    for (const auto& l : j.at("lines"))
      o.lines.push_back(model::order_line{l.at("product_id"), l.at("name"),
                                          l.at("unit_price_cents"), l.at("quantity"),
                                          l.value("weight_grams", std::int64_t{0})});
    j.at("currency").get_to(o.currency);
    j.at("subtotal_cents").get_to(o.subtotal_cents);
    j.at("shipping_cents").get_to(o.shipping_cents);
    j.at("total_cents").get_to(o.total_cents);
    o.shipping_address = address_from(j.at("shipping_address"));
    j.at("points_awarded").get_to(o.points_awarded);
    j.at("version").get_to(o.version);
    j.at("created_at_ms").get_to(o.created_at_ms);
    j.at("updated_at_ms").get_to(o.updated_at_ms);
    j.at("payment_due_at_ms").get_to(o.payment_due_at_ms);
    if (j.contains("payment"))
      o.payment = model::payment_info{j["payment"].at("status"), j["payment"].at("provider"),
                                      j["payment"].at("reference")};
    return o;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

} // namespace emporium::persistence::order_store
