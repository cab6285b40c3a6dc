// Handlers of customers, sessions, carts and orders.

#include "core/ids.hpp"
#include "http/cart_codec.hpp"
#include "http/customer_codec.hpp"
#include "http/gateway.hpp"
#include "http/handler_support.hpp"
#include "http/json_codec.hpp"
#include "http/order_codec.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"

namespace emporium::http {

namespace {

response created(std::string body, std::string location) {
  auto res = json_response(201, std::move(body));
  res.header("Location", std::move(location));
  return res;
}

/// The runtime's callback: hands `r` over as a value, answered with `ok(value)` or its problem
/// on the connection's strand (not on the actor's thread).
template <class T, class Ok>
auto answer(responder respond, Ok ok) {
  return [respond = std::move(respond), ok = std::move(ok)](result<T> r) {
    respond.later([r = std::move(r), ok]() mutable -> response {
      if (!r)
        return problem(r.error());
      return ok(*r);
    });
  };
}

/// The Idempotency-Key header, validated; a problem when malformed.
std::optional<response> read_idempotency_key(const request& req, model::order_request& out) {
  auto key = req.header("idempotency-key");
  if (key.empty())
    return std::nullopt;
  if (!codec::valid_idempotency_key(key))
    return problem(400,
                   "Idempotency-Key must be 1 to "
                     + std::to_string(codec::idempotency_key_max_chars)
                     + " visible ASCII characters",
                   {{"Idempotency-Key", "is malformed"}});
  out.idempotency_key = std::string{key};
  return std::nullopt;
}

/// The first problem with an order's body (content type, the body itself, Idempotency-Key), or
/// none; then the order's request hash is bound to `scope` (the same key with another scope is
/// another request).
std::optional<response> check_order_body(const request& req, result<model::order_request>& order,
                                         const std::string& scope) {
  if (auto bad = require_json(req))
    return bad;
  if (!order)
    return problem(order.error());
  if (auto bad = read_idempotency_key(req, *order))
    return bad;
  order->request_hash = core::sha256_hex(scope + order->request_hash);
  return std::nullopt;
}

response order_created(const model::order_outcome& o) {
  return created(codec::encode(o.placed), "/orders/" + o.placed.id);
}

// -- customers and sessions -------------------------------------------------------------------

void post_customer(app& a, const request& req, const path_params&, const query_args&,
                   responder respond) {
  if (auto bad = require_json(req))
    return respond(std::move(*bad));
  auto draft = codec::decode_customer_draft(req.body);
  if (!draft)
    return respond(problem(draft.error()));
  a.runtime.create_customer(
    std::move(*draft), answer<model::customer>(respond, [&a](const model::customer& c) {
      return created(codec::encode(c, a.settings.loyalty), "/customers/" + c.id);
    }));
}

void get_customer(app& a, const request& req, const path_params& p, const query_args&,
                  responder respond) {
  a.runtime.get_customer(principal_of(req.who), p["id"],
                         answer<model::customer>(respond, [&a](const model::customer& c) {
                           return json_response(200, codec::encode(c, a.settings.loyalty));
                         }));
}

void get_customer_orders(app& a, const request& req, const path_params& p, const query_args& q,
                         responder respond) {
  a.runtime.list_customer_orders(principal_of(req.who), p["id"], q.after_id, q.limit,
                                 answer<model::order_page>(respond, [](const auto& page) {
                                   return json_response(200, codec::encode(page));
                                 }));
}

void post_session(app& a, const request& req, const path_params&, const query_args&,
                  responder respond) {
  if (auto bad = require_json(req))
    return respond(std::move(*bad));
  auto login = codec::decode_login(req.body);
  if (!login)
    return respond(problem(login.error()));
  a.runtime.login(std::move(login->email), std::move(login->password),
                  answer<model::session_grant>(respond, [&a](model::session_grant g) {
                    g.token = gateway::sign_token(g.token, a.token_key);
                    return json_response(200, codec::encode(g));
                  }));
}

// -- carts ------------------------------------------------------------------------------------

auto cart_ok(int status = 200) {
  return [status](const model::cart_view& v) {
    if (status == 201)
      return created(codec::encode(v), "/carts/" + v.basket.id);
    return json_response(status, codec::encode(v));
  };
}

/// The country a cart's shipping is quoted for: ?country=XX, else the configured default.
std::string quote_country(const app& a, const query_args& q) {
  return q.country ? *q.country : a.settings.shipping.default_country;
}

void post_cart(app& a, const request& req, const path_params&, const query_args&,
               responder respond) {
  a.runtime.create_cart(principal_of(req.who), answer<model::cart_view>(respond, cart_ok(201)));
}

void get_cart(app& a, const request& req, const path_params& p, const query_args& q,
              responder respond) {
  a.runtime.get_cart(principal_of(req.who), p["id"], quote_country(a, q),
                     answer<model::cart_view>(respond, cart_ok()));
}

void put_cart_item(app& a, const request& req, const path_params& p, const query_args& q,
                   responder respond) {
  if (auto bad = require_json(req))
    return respond(std::move(*bad));
  auto quantity = codec::decode_quantity(req.body, a.settings.orders.max_units_per_line);
  if (!quantity)
    return respond(problem(quantity.error()));
  a.runtime.set_cart_item(principal_of(req.who), p["id"], p["product_id"], *quantity,
                          quote_country(a, q), answer<model::cart_view>(respond, cart_ok()));
}

void post_checkout(app& a, const request& req, const path_params& p, const query_args&,
                   responder respond) {
  const auto& id = p["id"];
  auto order = codec::decode_checkout(req.body);
  if (auto invalid = check_order_body(req, order, "checkout:" + id + ":"))
    return respond(std::move(*invalid));
  a.runtime.checkout(principal_of(req.who), id, std::move(*order),
                     answer<model::order_outcome>(respond, order_created));
}

// -- orders -----------------------------------------------------------------------------------

void post_order(app& a, const request& req, const path_params&, const query_args&,
                responder respond) {
  auto order = codec::decode_order_request(req.body, a.settings.orders.max_lines,
                                           a.settings.orders.max_units_per_line);
  if (auto invalid = check_order_body(req, order, "orders:"))
    return respond(std::move(*invalid));
  a.runtime.place_order(principal_of(req.who), std::move(*order),
                        answer<model::order_outcome>(respond, order_created));
}

auto order_ok = [](const model::order& o) { return json_response(200, codec::encode(o)); };

void get_order(app& a, const request& req, const path_params& p, const query_args&,
               responder respond) {
  a.runtime.get_order(principal_of(req.who), p["id"], answer<model::order>(respond, order_ok));
}

void post_payment(app& a, const request& req, const path_params& p, const query_args&,
                  responder respond) {
  if (auto bad = require_json(req))
    return respond(std::move(*bad));
  auto method = codec::decode_payment(req.body);
  if (!method)
    return respond(problem(method.error()));
  a.runtime.pay_order(principal_of(req.who), p["id"], *method,
                      answer<model::order>(respond, order_ok));
}

void post_cancel(app& a, const request& req, const path_params& p, const query_args&,
                 responder respond) {
  a.runtime.cancel_order(principal_of(req.who), p["id"], answer<model::order>(respond, order_ok));
}

void post_ship(app& a, const request& req, const path_params& p, const query_args&,
               responder respond) {
  a.runtime.ship_order(principal_of(req.who), p["id"], answer<model::order>(respond, order_ok));
}

void post_deliver(app& a, const request& req, const path_params& p, const query_args&,
                  responder respond) {
  a.runtime.deliver_order(principal_of(req.who), p["id"], answer<model::order>(respond, order_ok));
}

} // namespace

const std::vector<binding>& commerce_handlers() {
  static const std::vector<binding> list{
    {"createCustomer", post_customer},
    {"getCustomer", get_customer},
    {"listCustomerOrders", get_customer_orders},
    {"login", post_session},
    {"createCart", post_cart},
    {"getCart", get_cart},
    {"setCartItem", put_cart_item},
    {"checkoutCart", post_checkout},
    {"createOrder", post_order},
    {"getOrder", get_order},
    {"payOrder", post_payment},
    {"cancelOrder", post_cancel},
    {"shipOrder", post_ship},
    {"deliverOrder", post_deliver},
  };
  return list;
}

} // namespace emporium::http
