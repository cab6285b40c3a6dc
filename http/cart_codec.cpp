#include "http/cart_codec.hpp"

#include "http/json_reader.hpp"
#include "http/order_codec.hpp"
#include "persistence/pg.hpp"

namespace emporium::http::codec {

result<std::int64_t> decode_quantity(const std::string& body, std::int64_t max_units) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"quantity"});
  auto q = r.integer("quantity", 0, max_units, true);
  if (!r.errors().empty() || !q)
    return failure{errc::invalid_input, "the quantity is invalid", std::move(r.errors())};
  return *q;
}

std::string encode(const model::cart_view& v) {
  const bool quoted = v.shipping_problem.empty();
  json out{{"id", v.basket.id},
           {"customer_id", v.basket.customer_id},
           {"items", lines_json(v.lines)},
           {"currency", v.currency},
           {"subtotal_cents", v.subtotal_cents},
           {"shipping_cents", quoted ? json(v.shipping_cents) : json()},
           {"total_cents", quoted ? json(v.total_cents) : json()},
           {"order_id", v.basket.order_id ? json(*v.basket.order_id) : json()},
           {"updated_at", persistence::format_rfc3339(v.basket.updated_at_ms)},
           {"expires_at", persistence::format_rfc3339(v.basket.expires_at_ms)}};
  if (!quoted)
    out["shipping_problem"] = v.shipping_problem;
  return dump_json(out);
}

} // namespace emporium::http::codec
