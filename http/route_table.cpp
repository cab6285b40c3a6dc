#include "http/route_table.hpp"

#include "core/ids.hpp"
#include "http/json_codec.hpp"
#include "http/json_reader.hpp"

#include <algorithm>
#include <charconv>

namespace emporium::http {

namespace {

const path_id product_id{"id", "prod", "no product has this id", "The product's id"};
const path_id cart_product_id{"product_id", "prod", "no product has this id", "The product's id"};
const path_id customer_id{"id", "cust", "no customer has this id", "The customer's id"};
const path_id cart_id{"id", "cart", "no cart has this id", "The cart's id"};
const path_id order_id{"id", "ord", "no order has this id", "The order's id"};
const path_id any_key{"id", nullptr, "", "Any entity's id (the ring hashes any key)"};

std::vector<route_spec> build() {
  using q = query_kind;
  std::vector<route_spec> t;
  auto add = [&t](route_spec r) -> route_spec& { return t.emplace_back(std::move(r)); };

  // Products. A path with several methods is named once, for all of them.
  const char* const products = "/products";
  const char* const product = "/products/{id}";
  {
    auto& r = add(
      {"GET", products, "listProducts", "products", "List products in id (creation) order"});
    r.query = {q::limit, q::cursor, q::category};
    r.strict_query = true;
    r.cursor_prefix = "prod";
    r.success = {{200, "A page of products", "ProductPage"}};
    r.errors = {400};
  }
  {
    auto& r = add({"GET", product, "getProduct", "products", "One product, with its ETag"});
    r.path_ids = {product_id};
    r.header_params = {"IfNoneMatch"};
    r.success = {{200, "The product", "Product", {"ETag"}},
                 {304,
                  "The cached copy named by If-None-Match is current",
                  nullptr,
                  {"ETag"},
                  "not_modified"}};
    r.errors = {404};
  }
  {
    auto& r = add(
      {"POST", products, "createProduct", "products", "Create a product", access::admin});
    r.body = "ProductCreate";
    r.success = {{201, "The created product", "Product", {"ETag", "Location"}}};
    r.errors = {409};
  }
  {
    auto& r = add({"PATCH", product, "updateProduct", "products",
                   "Change a product's fields (optimistic concurrency with If-Match)",
                   access::admin});
    r.path_ids = {product_id};
    r.header_params = {"IfMatch"};
    r.body = "ProductPatch";
    r.success = {{200, "The product", "Product", {"ETag"}}};
    r.errors = {404, 409, 412};
  }
  // Search
  {
    auto& r = add({"GET", "/search", "searchProducts", "search",
                   "Full-text search with filters, sorting and facets"});
    r.codec_query = "search";
    r.success = {{200, "Matching products and facets", "SearchResult"}};
    r.errors = {400};
  }
  // Customers and sessions
  {
    auto& r = add({"POST", "/customers", "createCustomer", "customers",
                   "Sign up (rate limited much more strictly, per address)"});
    r.limit_class = route_class::signup;
    r.body = "CustomerCreate";
    r.success = {{201, "The new customer", "Customer", {"Location"}}};
    r.errors = {409};
  }
  {
    auto& r = add({"GET", "/customers/{id}", "getCustomer", "customers",
                   "A customer's profile and loyalty (self or admin)", access::signed_in});
    r.path_ids = {customer_id};
    r.success = {{200, "The customer", "Customer"}};
    r.errors = {404};
  }
  {
    auto& r = add({"GET", "/customers/{id}/orders", "listCustomerOrders", "customers",
                   "A customer's orders, newest first (self or admin)", access::signed_in});
    r.path_ids = {customer_id};
    r.query = {q::limit, q::cursor};
    r.strict_query = true;
    r.cursor_prefix = "ord";
    r.success = {{200, "A page of orders", "OrderPage"}};
    r.errors = {400, 404};
  }
  {
    auto& r = add({"POST", "/sessions", "login", "customers",
                   "Log in (rate limited much more strictly, per address)"});
    r.limit_class = route_class::login;
    r.body = "Login";
    r.success = {{200, "A bearer token", "Session"}};
    r.errors = {401};
  }
  // Carts
  {
    auto& r = add({"POST", "/carts", "createCart", "carts", "A new, empty cart", access::customer,
                   std::nullopt, "carts belong to customers: use a customer's token"});
    r.success = {{201, "The new cart", "Cart", {"Location"}}};
    r.errors = {403};
  }
  {
    auto& r = add({"GET", "/carts/{id}", "getCart", "carts",
                   "Items at current prices, subtotal, shipping quote and total (owner or admin)",
                   access::signed_in});
    r.path_ids = {cart_id};
    r.query = {q::country};
    r.success = {{200, "The cart", "Cart"}};
    r.errors = {400, 404, 422};
  }
  {
    auto& r = add({"PUT", "/carts/{id}/items/{product_id}", "setCartItem", "carts",
                   "Set a line's quantity; 0 removes it (owner)", access::customer, std::nullopt,
                   "only the owner changes a cart: use the customer's token"});
    r.path_ids = {cart_id, cart_product_id};
    r.query = {q::country};
    r.body = "CartItem";
    r.success = {{200, "The cart", "Cart"}};
    r.errors = {403, 404, 409, 422};
  }
  {
    auto& r = add({"POST", "/carts/{id}/checkout", "checkoutCart", "carts",
                   "Turn the cart into an order, as POST /orders (owner)", access::customer,
                   std::nullopt, "only the owner checks a cart out: use the customer's token"});
    r.path_ids = {cart_id};
    r.header_params = {"IdempotencyKey"};
    r.body = "Checkout";
    r.success = {{201, "The new order", "Order", {"Location"}}};
    r.errors = {403, 404, 409, 422};
  }
  // Orders
  {
    auto& r = add({"POST", "/orders", "createOrder", "orders",
                   "Reserve stock for every line at once (or none) and create the order",
                   access::customer, std::nullopt,
                   "orders are placed by customers: use a customer's token"});
    r.header_params = {"IdempotencyKey"};
    r.body = "OrderCreate";
    r.success = {{201, "The new order", "Order", {"Location"}}};
    r.errors = {403, 409, 422};
  }
  {
    auto& r = add({"GET", "/orders/{id}", "getOrder", "orders", "The order (owner or admin)",
                   access::signed_in});
    r.path_ids = {order_id};
    r.success = {{200, "The order", "Order"}};
    r.errors = {404};
  }
  {
    auto& r = add({"POST", "/orders/{id}/payments", "payOrder", "orders",
                   "Pay through the payment provider (owner)", access::customer, std::nullopt,
                   "only the owner pays an order: use the customer's token"});
    r.path_ids = {order_id};
    r.body = "PaymentRequest";
    r.success = {{200, "The whole order", "Order"}};
    r.errors = {402, 403, 404, 409, 502};
  }
  {
    auto& r = add({"POST", "/orders/{id}/cancel", "cancelOrder", "orders",
                   "Cancel and release the stock (owner while unpaid; admin, refunding a paid "
                   "order)",
                   access::signed_in});
    r.path_ids = {order_id};
    r.success = {{200, "The whole order", "Order"}};
    r.errors = {403, 404, 409};
  }
  {
    auto& r = add({"POST", "/orders/{id}/ship", "shipOrder", "orders", "Mark a paid order shipped",
                   access::admin_by_runtime});
    r.path_ids = {order_id};
    r.success = {{200, "The whole order", "Order"}};
    r.errors = {404, 409};
  }
  {
    auto& r = add({"POST", "/orders/{id}/deliver", "deliverOrder", "orders",
                   "Mark a shipped order delivered", access::admin_by_runtime});
    r.path_ids = {order_id};
    r.success = {{200, "The whole order", "Order"}};
    r.errors = {404, 409};
  }
  {
    auto& r = add({"GET", "/orders/{id}/events", "orderEvents", "orders",
                   "Stream the order's status changes as Server-Sent Events (owner or admin)",
                   access::signed_in});
    r.path_ids = {order_id};
    r.header_params = {"LastEventId", "After", "AccessToken"};
    r.success = {{200, "", nullptr, {}, "order_event_stream"}};
    r.errors = {400, 404, 410};
  }
  // Realtime
  {
    auto& r = add({"GET", "/products/{id}/events", "productEvents", "realtime",
                   "Stream the product's stock changes as Server-Sent Events"});
    r.path_ids = {product_id};
    r.header_params = {"LastEventId", "After"};
    r.success = {{200, "", nullptr, {}, "product_event_stream"}};
    r.errors = {400, 404, 410};
  }
  {
    auto& r = add({"GET", "/ws", "websocket", "realtime",
                   "WebSocket for stock changes (product:ID) and order status (order:ID)"});
    r.header_params = {"Upgrade", "AccessToken"};
    r.success = {{101, "", nullptr, {}, "websocket"}};
    r.errors = {400, 401};
    r.uses_database = false;
  }
  // Operations
  {
    auto& r = add({"GET", "/healthz", "healthz", "operations", "Liveness"});
    r.success = {{200, "The process is up", "Health"}};
    r.uses_database = false;
    r.probe = true;
  }
  {
    auto& r = add({"GET", "/readyz", "readyz", "operations",
                   "Readiness: PostgreSQL is reachable and, in a cluster, this node serves (it "
                   "sees a majority)"});
    r.success = {{200, "Ready to serve", "Health"}};
    r.probe = true;
  }
  {
    auto& r = add({"GET", "/metrics", "metrics", "operations", "Metrics for Prometheus"});
    r.success = {{200, "", nullptr, {}, "metrics_text"}};
    r.uses_database = false;
    r.probe = true;
  }
  {
    auto& r = add({"GET", "/cluster", "getCluster", "operations",
                   "The cluster's members as this node sees them", access::admin});
    r.success = {{200, "The members, the ring's version and whether this node serves", "Cluster"}};
    r.uses_database = false;
  }
  {
    auto& r = add({"GET", "/cluster/owner/{id}", "getClusterOwner", "operations",
                   "The node owning an entity (any entity id)", access::admin});
    r.path_ids = {any_key};
    r.success = {{200, "The owner on this node's current ring", "ClusterOwner"}};
    r.uses_database = false;
  }
  {
    auto& r = add({"GET", "/openapi.json", "openapi", "operations", "This document"});
    r.success = {{200, "The OpenAPI 3.1 document", nullptr, {}, "any_object"}};
    r.uses_database = false;
  }
  return t;
}

std::optional<int> parse_limit(const std::string& s) {
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || v < page_limit_min || v > page_limit_max)
    return std::nullopt;
  return v;
}

const char* query_name(query_kind k) {
  switch (k) {
    case query_kind::limit: return "limit";
    case query_kind::cursor: return "cursor";
    case query_kind::category: return "category";
    case query_kind::country: return "country";
  }
  return "";
}

} // namespace

const std::vector<route_spec>& route_table() {
  static const std::vector<route_spec> table = build();
  return table;
}

const route_spec* find_route(std::string_view method, std::string_view pattern) {
  for (const auto& r : route_table())
    if (method == r.method && pattern == r.pattern)
      return &r;
  return nullptr;
}

router table_router(const std::function<handler(const route_spec&)>& bind) {
  router out;
  for (const auto& r : route_table())
    if (r.routed)
      out.add(r.method, r.pattern, bind(r), &r);
  return out;
}

std::optional<response> check_path_ids(const route_spec& spec, const path_params& params) {
  for (const auto& p : spec.path_ids)
    if (p.prefix != nullptr && !core::is_valid_id(params[p.name], p.prefix))
      return problem(404, p.not_found);
  return std::nullopt;
}

std::optional<response> check_query(const route_spec& spec, const request& req, query_args& out) {
  std::vector<field_error> errs;
  if (spec.strict_query)
    for (const auto& [k, v] : req.query)
      if (std::none_of(spec.query.begin(), spec.query.end(),
                       [&k = k](query_kind q) { return k == query_name(q); }))
        errs.push_back({k, "is not a known query parameter"});
  for (auto kind : spec.query) {
    auto* value = req.query_one(query_name(kind));
    if (!value)
      continue;
    switch (kind) {
      case query_kind::limit:
        if (auto v = parse_limit(*value))
          out.limit = *v;
        else
          errs.push_back({"limit", "must be an integer from " + std::to_string(page_limit_min)
                                     + " to " + std::to_string(page_limit_max)});
        break;
      case query_kind::cursor:
        if (auto id = codec::decode_cursor(*value, spec.cursor_prefix))
          out.after_id = *id;
        else
          errs.push_back({"cursor", "is not a cursor this server issued"});
        break;
      case query_kind::category:
        if (value->empty() || value->size() > category_max_chars)
          errs.push_back(
            {"category", "must be 1 to " + std::to_string(category_max_chars) + " characters"});
        else if (has_control_chars(*value))
          errs.push_back({"category", "must not contain control characters"});
        else
          out.category = *value;
        break;
      case query_kind::country:
        if (value->size() != 2 || !std::all_of(value->begin(), value->end(), [](char x) {
              return x >= 'A' && x <= 'Z';
            }))
          errs.push_back({"country", "must be an ISO 3166-1 alpha-2 code in upper case"});
        else
          out.country = *value;
        break;
    }
  }
  if (!errs.empty())
    return problem(400, "invalid query parameters", std::move(errs));
  return std::nullopt;
}

route_class class_of(const route_spec* spec, std::string_view method) {
  if (method == "GET" || method == "HEAD" || method == "OPTIONS")
    return route_class::read;
  if (spec && spec->limit_class)
    return *spec->limit_class;
  return route_class::write;
}

} // namespace emporium::http
