// Routes of customers, sessions, carts and orders (DESIGN.md §3).

#include "http/commerce_codec.hpp"
#include "http/handler_support.hpp"
#include "http/json_codec.hpp"
#include "http/gateway.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"
#include "persistence/ids.hpp"

#include <charconv>

namespace emporium::http {

namespace {

using model::principal;

response created(std::string body, std::string location) {
  auto res = json_response(201, std::move(body));
  res.header("Location", std::move(location));
  return res;
}

/// Answers `r` with `ok(value)`, or its problem.
template <class T, class Ok>
auto answer(responder respond, Ok ok) {
  return [respond = std::move(respond), ok = std::move(ok)](result<T> r) mutable {
    if (!r)
      return respond(problem(r.error()));
    respond(ok(*r));
  };
}

/// Runs `then` for a signed-in caller (customer or admin); anonymous callers get 401.
template <class F>
void signed_in(app& a, const request& req, const responder& respond, F then) {
  identify(
    a, req,
    [respond, then = std::move(then)](principal who) mutable {
      if (!who.admin && who.customer_id.empty())
        return respond(problem(401, "this endpoint needs a customer's or the admin's token"));
      then(std::move(who));
    },
    respond);
}

/// The Idempotency-Key header, validated; a problem when malformed.
std::optional<response> read_idempotency_key(const request& req, model::order_request& out) {
  auto key = req.header("idempotency-key");
  if (key.empty())
    return std::nullopt;
  if (!codec::valid_idempotency_key(key))
    return problem(400, "Idempotency-Key must be 1 to 255 visible ASCII characters",
                   {{"Idempotency-Key", "is malformed"}});
  out.idempotency_key = std::string{key};
  return std::nullopt;
}

std::optional<std::int32_t> parse_limit(const std::string& s) {
  std::int32_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || v < 1 || v > 100)
    return std::nullopt;
  return v;
}

/// The first problem with an order's body (content type, the body itself, Idempotency-Key), or
/// none; then the order's request hash is bound to `scope` (the same key with another scope is
/// another request). Checked before authentication, answered after it.
std::optional<response> check_order_body(const request& req, result<model::order_request>& order,
                                         const std::string& scope) {
  if (auto bad = require_json(req))
    return bad;
  if (!order)
    return problem(order.error());
  if (auto bad = read_idempotency_key(req, *order))
    return bad;
  order->request_hash = persistence::sha256_hex(scope + order->request_hash);
  return std::nullopt;
}

/// 403 for the admin on what only the resource's owner does (DESIGN.md: owner).
response owner_only(const std::string& what) {
  return problem(403, "only the owner " + what + ": use the customer's token");
}

response order_created(const model::order_outcome& o) {
  return created(codec::encode(o.placed), "/orders/" + o.placed.id);
}

// -- customers and sessions -------------------------------------------------------------------

void post_customer(app& a, const request& req, const path_params&, responder respond) {
  if (auto bad = require_json(req))
    return respond(std::move(*bad));
  auto draft = codec::decode_customer_draft(req.body);
  if (!draft)
    return respond(problem(draft.error()));
  a.runtime.create_customer(std::move(*draft),
                            answer<model::customer>(respond, [&a](const model::customer& c) {
                              return created(codec::encode(c, a.settings->loyalty),
                                             "/customers/" + c.id);
                            }));
}

void get_customer(app& a, const request& req, const path_params& p, responder respond) {
  auto id = p["id"];
  signed_in(a, req, respond, [&a, id, respond](principal who) {
    if (!persistence::is_valid_id(id, "cust"))
      return respond(problem(404, "no customer has this id"));
    a.runtime.get_customer(std::move(who), id,
                           answer<model::customer>(respond, [&a](const model::customer& c) {
                             return json_response(200, codec::encode(c, a.settings->loyalty));
                           }));
  });
}

void get_customer_orders(app& a, const request& req, const path_params& p, responder respond) {
  auto id = p["id"];
  std::vector<field_error> errs;
  int limit = 20;
  std::optional<std::string> before;
  for (const auto& [k, v] : req.query)
    if (k != "limit" && k != "cursor")
      errs.push_back({k, "is not a known query parameter"});
  if (auto* l = req.query_one("limit")) {
    if (auto v = parse_limit(*l))
      limit = *v;
    else
      errs.push_back({"limit", "must be an integer from 1 to 100"});
  }
  if (auto* c = req.query_one("cursor")) {
    if (auto after = codec::decode_cursor(*c, "ord"))
      before = *after;
    else
      errs.push_back({"cursor", "is not a cursor this server issued"});
  }
  signed_in(a, req, respond, [&a, id, limit, before, errs, respond](principal who) {
    if (!persistence::is_valid_id(id, "cust"))
      return respond(problem(404, "no customer has this id"));
    if (!errs.empty())
      return respond(problem(400, "invalid query parameters", errs));
    a.runtime.list_customer_orders(std::move(who), id, before, limit,
                                   answer<model::order_page>(respond, [](const auto& page) {
                                     return json_response(200, codec::encode(page));
                                   }));
  });
}

void post_session(app& a, const request& req, const path_params&, responder respond) {
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

/// The country a cart's shipping is quoted for: ?country=XX, else the configured default.
std::optional<std::string> quote_country(const app& a, const request& req, responder& respond) {
  auto* c = req.query_one("country");
  if (!c)
    return a.settings->shipping.default_country;
  if (c->size() != 2 || !std::all_of(c->begin(), c->end(), [](char x) { return x >= 'A' && x <= 'Z'; })) {
    respond(problem(400, "invalid query parameters",
                    {{"country", "must be an ISO 3166-1 alpha-2 code in upper case"}}));
    return std::nullopt;
  }
  return *c;
}

auto cart_ok(int status = 200) {
  return [status](const model::cart_view& v) {
    if (status == 201)
      return created(codec::encode(v), "/carts/" + v.basket.id);
    return json_response(status, codec::encode(v));
  };
}

void post_cart(app& a, const request& req, const path_params&, responder respond) {
  signed_in(a, req, respond, [&a, respond](principal who) {
    if (who.customer_id.empty())
      return respond(problem(403, "carts belong to customers: use a customer's token"));
    a.runtime.create_cart(std::move(who), answer<model::cart_view>(respond, cart_ok(201)));
  });
}

void get_cart(app& a, const request& req, const path_params& p, responder respond) {
  auto id = p["id"];
  auto country = quote_country(a, req, respond);
  if (!country)
    return;
  signed_in(a, req, respond, [&a, id, country, respond](principal who) {
    if (!persistence::is_valid_id(id, "cart"))
      return respond(problem(404, "no cart has this id"));
    a.runtime.get_cart(std::move(who), id, *country,
                       answer<model::cart_view>(respond, cart_ok()));
  });
}

void put_cart_item(app& a, const request& req, const path_params& p, responder respond) {
  auto id = p["id"];
  auto product_id = p["product_id"];
  auto country = quote_country(a, req, respond);
  if (!country)
    return;
  auto bad_type = require_json(req);
  auto quantity = codec::decode_quantity(req.body, a.settings->orders.max_units_per_line);
  signed_in(a, req, respond,
            [&a, id, product_id, country, bad_type, quantity, respond](principal who) mutable {
              if (who.customer_id.empty())
                return respond(owner_only("changes a cart"));
              if (!persistence::is_valid_id(id, "cart"))
                return respond(problem(404, "no cart has this id"));
              if (!persistence::is_valid_id(product_id, "prod"))
                return respond(problem(404, "no product has this id"));
              if (bad_type)
                return respond(std::move(*bad_type));
              if (!quantity)
                return respond(problem(quantity.error()));
              a.runtime.set_cart_item(std::move(who), id, product_id, *quantity, *country,
                                      answer<model::cart_view>(respond, cart_ok()));
            });
}

void post_checkout(app& a, const request& req, const path_params& p, responder respond) {
  auto id = p["id"];
  // Decoded now (the request is not kept), answered only once the caller is known.
  auto order = codec::decode_checkout(req.body);
  auto invalid = check_order_body(req, order, "checkout:" + id + ":");
  signed_in(a, req, respond,
            [&a, id, invalid, order = std::move(order), respond](principal who) mutable {
              if (who.customer_id.empty())
                return respond(owner_only("checks a cart out"));
              if (!persistence::is_valid_id(id, "cart"))
                return respond(problem(404, "no cart has this id"));
              if (invalid)
                return respond(std::move(*invalid));
              a.runtime.checkout(std::move(who), id, std::move(*order),
                                 answer<model::order_outcome>(respond, order_created));
            });
}

// -- orders -----------------------------------------------------------------------------------

void post_order(app& a, const request& req, const path_params&, responder respond) {
  auto order = codec::decode_order_request(req.body, a.settings->orders.max_lines,
                                           a.settings->orders.max_units_per_line);
  auto invalid = check_order_body(req, order, "orders:");
  signed_in(a, req, respond,
            [&a, invalid, order = std::move(order), respond](principal who) mutable {
              if (who.customer_id.empty())
                return respond(
                  problem(403, "orders are placed by customers: use a customer's token"));
              if (invalid)
                return respond(std::move(*invalid));
              a.runtime.place_order(std::move(who), std::move(*order),
                                    answer<model::order_outcome>(respond, order_created));
            });
}

auto order_ok = [](const model::order& o) { return json_response(200, codec::encode(o)); };

/// GET /orders/{id} and the actions on an order share their shape: who, id, one runtime call.
template <class Call>
void order_action(app& a, const request& req, const path_params& p, responder respond, Call call) {
  auto id = p["id"];
  signed_in(a, req, respond, [&a, id, respond, call](principal who) mutable {
    if (!persistence::is_valid_id(id, "ord"))
      return respond(problem(404, "no order has this id"));
    call(a.runtime, std::move(who), id, answer<model::order>(respond, order_ok));
  });
}

void get_order(app& a, const request& req, const path_params& p, responder respond) {
  order_action(a, req, p, std::move(respond), [](auto& rt, principal who, std::string id, auto cb) {
    rt.get_order(std::move(who), std::move(id), std::move(cb));
  });
}

void post_payment(app& a, const request& req, const path_params& p, responder respond) {
  auto id = p["id"];
  auto invalid = require_json(req);
  auto method = codec::decode_payment(req.body);
  if (!invalid && !method)
    invalid = problem(method.error());
  signed_in(a, req, respond, [&a, id, invalid, method, respond](principal who) mutable {
    if (who.customer_id.empty())
      return respond(owner_only("pays an order"));
    if (!persistence::is_valid_id(id, "ord"))
      return respond(problem(404, "no order has this id"));
    if (invalid)
      return respond(std::move(*invalid));
    a.runtime.pay_order(std::move(who), id, *method, answer<model::order>(respond, order_ok));
  });
}

void post_cancel(app& a, const request& req, const path_params& p, responder respond) {
  order_action(a, req, p, std::move(respond), [](auto& rt, principal who, std::string id, auto cb) {
    rt.cancel_order(std::move(who), std::move(id), std::move(cb));
  });
}

void post_ship(app& a, const request& req, const path_params& p, responder respond) {
  order_action(a, req, p, std::move(respond), [](auto& rt, principal who, std::string id, auto cb) {
    rt.ship_order(std::move(who), std::move(id), std::move(cb));
  });
}

void post_deliver(app& a, const request& req, const path_params& p, responder respond) {
  order_action(a, req, p, std::move(respond), [](auto& rt, principal who, std::string id, auto cb) {
    rt.deliver_order(std::move(who), std::move(id), std::move(cb));
  });
}

} // namespace

void add_commerce_routes(router& r, app& a) {
  r.add("POST", "/customers", bind_handler(a, post_customer));
  r.add("GET", "/customers/{id}", bind_handler(a, get_customer));
  r.add("GET", "/customers/{id}/orders", bind_handler(a, get_customer_orders));
  r.add("POST", "/sessions", bind_handler(a, post_session));
  r.add("POST", "/carts", bind_handler(a, post_cart));
  r.add("GET", "/carts/{id}", bind_handler(a, get_cart));
  r.add("PUT", "/carts/{id}/items/{product_id}", bind_handler(a, put_cart_item));
  r.add("POST", "/carts/{id}/checkout", bind_handler(a, post_checkout));
  r.add("POST", "/orders", bind_handler(a, post_order));
  r.add("GET", "/orders/{id}", bind_handler(a, get_order));
  r.add("POST", "/orders/{id}/payments", bind_handler(a, post_payment));
  r.add("POST", "/orders/{id}/cancel", bind_handler(a, post_cancel));
  r.add("POST", "/orders/{id}/ship", bind_handler(a, post_ship));
  r.add("POST", "/orders/{id}/deliver", bind_handler(a, post_deliver));
}

} // namespace emporium::http
