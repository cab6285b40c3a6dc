#pragma once
/// Domain records of customers, sessions, carts and orders (see model.hpp for the conventions:
/// plain structs, money in minor units, timestamps in milliseconds since the epoch).

#include "core/model.hpp"

namespace emporium::model {

struct address {
  std::string name;
  std::string line1;
  std::string line2;
  std::string city;
  std::string region;
  std::string postal_code;
  std::string country; ///< ISO 3166-1 alpha-2, upper-case
};

struct customer {
  std::string id;
  std::string email;
  std::string name;
  std::int64_t loyalty_points = 0;
  std::int64_t version = 0;
  std::int64_t created_at_ms = 0;
};

struct customer_draft {
  std::string email;
  std::string name;
  std::string password; ///< plain text only until it is hashed on a worker thread
};

/// A logged-in session: the token is shown once; only its hash is stored.
struct session_grant {
  std::string token;
  std::string customer_id;
  std::int64_t expires_at_ms = 0;
};

struct line_request {
  std::string product_id;
  std::int64_t quantity = 0;
};

struct order_line {
  std::string product_id;
  std::string name;
  std::int64_t unit_price_cents = 0;
  std::int64_t quantity = 0;
  std::int64_t weight_grams = 0; ///< per unit, for the shipping quote (not shown)
};

struct payment_info {
  std::string status;    ///< captured, refunded
  std::string provider;  ///< simulated
  std::string reference; ///< the provider's charge id
};

/// Order statuses, as stored and served.
namespace order_status {
constexpr const char* pending_payment = "pending_payment";
/// Internal: the provider is being called (or the outcome awaits reconciliation).
constexpr const char* paying = "paying";
constexpr const char* paid = "paid";
constexpr const char* shipped = "shipped";
constexpr const char* delivered = "delivered";
constexpr const char* cancelled = "cancelled";
/// The status as the API shows it: a payment in progress is still pending payment.
inline std::string shown(const std::string& status) {
  return status == paying ? std::string{pending_payment} : status;
}
} // namespace order_status

struct order {
  std::string id;
  std::string customer_id;
  std::string status;
  std::vector<order_line> lines;
  std::string currency;
  std::int64_t subtotal_cents = 0;
  std::int64_t shipping_cents = 0;
  std::int64_t total_cents = 0;
  address shipping_address;
  std::optional<payment_info> payment;
  std::int64_t points_awarded = 0;
  std::int64_t version = 0;
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
  std::int64_t payment_due_at_ms = 0;
};

/// What POST /orders and checkout ask for, after validation at the edge.
struct order_request {
  std::string customer_id;
  std::vector<line_request> items;
  address shipping_address;
  std::optional<std::string> idempotency_key;
  std::string request_hash;           ///< of the canonical JSON body, for key reuse checks
  std::optional<std::string> cart_id; ///< set by checkout
  /// The cart's version the items were copied at (checkout); the order commits only while the
  /// cart row is still at it. 0: not checked.
  std::int64_t cart_version = 0;
};

/// What an order request came to: the order (201), or a failure kept for idempotent replays.
struct order_outcome {
  bool replayed = false;
  order placed;
};

struct order_page {
  std::vector<order> items;
  std::optional<std::string> next_after_id;
};

struct cart_item {
  std::string product_id;
  std::int64_t quantity = 0;
};

struct cart {
  std::string id;
  std::string customer_id;
  std::vector<cart_item> items;
  std::optional<std::string> order_id; ///< set once checked out
  std::int64_t version = 0;
  std::int64_t updated_at_ms = 0;
  std::int64_t expires_at_ms = 0;
};

/// A cart priced at current prices, with a shipping quote.
struct cart_view {
  cart basket;
  std::vector<order_line> lines;
  std::string currency;
  std::int64_t subtotal_cents = 0;
  std::int64_t shipping_cents = 0;
  std::int64_t total_cents = 0;
  /// Why no shipping can be quoted for these items (too heavy for the zone, no rate in the
  /// currency); empty when shipping_cents and total_cents hold a quote.
  std::string shipping_problem;
};

/// What a product tells an order that reserved some of its stock: the terms of the line.
struct reservation {
  std::string name;
  std::int64_t unit_price_cents = 0;
  std::string currency;
  std::int64_t weight_grams = 0;
};

/// A product's committed stock after an order or cancellation, with the row's new version.
struct stock_level {
  std::string product_id;
  std::int64_t stock = 0;
  std::int64_t version = 0;
};

/// What one committed order transaction changed, for the actors that mirror those rows.
struct order_change {
  order placed;
  std::vector<stock_level> stock;
  std::int64_t customer_points = -1; ///< -1: unchanged
  std::int64_t customer_version = 0;
};

/// Who is calling, as established by the gateway from the bearer token.
struct principal {
  bool admin = false;
  std::string customer_id; ///< empty for admin and anonymous callers
};

// -- inspect overloads (CAF serialization; templates, so no CAF include here) -----------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, address& x) {
  return f(x.name, x.line1, x.line2, x.city, x.region, x.postal_code, x.country);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, customer& x) {
  return f(x.id, x.email, x.name, x.loyalty_points, x.version, x.created_at_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, customer_draft& x) {
  return f(x.email, x.name, x.password);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_grant& x) {
  return f(x.token, x.customer_id, x.expires_at_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, line_request& x) {
  return f(x.product_id, x.quantity);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_line& x) {
  return f(x.product_id, x.name, x.unit_price_cents, x.quantity, x.weight_grams);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_info& x) {
  return f(x.status, x.provider, x.reference);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order& x) {
  return f(x.id, x.customer_id, x.status, x.lines, x.currency, x.subtotal_cents, x.shipping_cents,
           x.total_cents, x.shipping_address, x.payment, x.points_awarded, x.version,
           x.created_at_ms, x.updated_at_ms, x.payment_due_at_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_request& x) {
  return f(x.customer_id, x.items, x.shipping_address, x.idempotency_key, x.request_hash, x.cart_id,
           x.cart_version);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_outcome& x) {
  return f(x.replayed, x.placed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_page& x) {
  return f(x.items, x.next_after_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_item& x) {
  return f(x.product_id, x.quantity);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart& x) {
  return f(x.id, x.customer_id, x.items, x.order_id, x.version, x.updated_at_ms, x.expires_at_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_view& x) {
  return f(x.basket, x.lines, x.currency, x.subtotal_cents, x.shipping_cents, x.total_cents,
           x.shipping_problem);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reservation& x) {
  return f(x.name, x.unit_price_cents, x.currency, x.weight_grams);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stock_level& x) {
  return f(x.product_id, x.stock, x.version);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_change& x) {
  return f(x.placed, x.stock, x.customer_points, x.customer_version);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, principal& x) {
  return f(x.admin, x.customer_id);
}

} // namespace emporium::model
