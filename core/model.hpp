#pragma once
/// Plain domain records shared by every layer. No library headers here: persistence stores
/// these, actors carry them in messages (their `inspect` overloads are templates, so this
/// header needs no CAF), and HTTP encodes them as JSON.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace emporium {

/// The one domain error enum. It travels through actors as a `caf::error` and is mapped to an
/// HTTP status and a problem+json body in exactly one place at the edge (http/problem.cpp).
enum class errc : std::uint8_t {
  none = 0,
  not_found,
  invalid_input,
  conflict, ///< unique key taken, state transition not allowed
  precondition_failed,
  out_of_stock,
  unauthorized,
  forbidden,
  rate_limited,
  unavailable, ///< a dependency (PostgreSQL) is down or overloaded
  timeout,     ///< an actor did not answer within the request deadline
  internal,
  unprocessable,    ///< well-formed but not doable: idempotency key reuse, unserved address
  payment_declined, ///< the payment provider declined (402)
  upstream_failed,  ///< the payment provider kept failing (502)
  /// Sent to another node for an entity this node does not own (their rings differ for a
  /// moment): the sender resolves the key again. Answered 503 if it ever reaches HTTP.
  moved,
  /// What was asked for existed once and is no longer kept: a feed resumed after a `seq` whose
  /// events the outbox has deleted (410).
  gone,
  /// Names something that does not exist now (an order's unknown product), or whose state does
  /// not allow the request now (products in two currencies): answered 400 like invalid_input,
  /// but not a verdict on the request alone, so an Idempotency-Key does not keep it (a retry
  /// after the catalog changed is a new attempt).
  unknown_reference,
};

/// A field-level validation failure, reported as one entry of problem+json `errors[]`.
struct field_error {
  std::string field;
  std::string message;
};

/// What went wrong, in domain terms.
struct failure {
  errc code = errc::internal;
  std::string detail;
  std::vector<field_error> errors;
};

/// A value or a failure, for APIs that cross from the actor world into plain C++ callbacks.
template <class T>
class result {
 public:
  result(T value) : v_(std::move(value)) {} // NOLINT: implicit by design
  result(failure f) : v_(std::move(f)) {}   // NOLINT
  result(errc code, std::string detail = {}) : v_(failure{code, std::move(detail), {}}) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const failure& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, failure> v_;
};

namespace model {

/// A product as stored and as served. Timestamps are milliseconds since the Unix epoch (UTC).
struct product {
  std::string id;
  std::string sku;
  std::string name;
  std::string description;
  std::int64_t price_cents = 0;
  std::string currency;
  std::string category;
  std::int64_t stock = 0;
  std::int64_t weight_grams = 0;
  std::vector<std::string> images;
  std::int64_t version = 0; ///< bumped by every committed change; the ETag is derived from it
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
};

/// The fields of a product create request, validated at the edge.
struct product_draft {
  std::string sku;
  std::string name;
  std::string description;
  std::int64_t price_cents = 0;
  std::string currency;
  std::string category = "uncategorized";
  std::int64_t stock = 0;
  std::int64_t weight_grams = 0;
  std::vector<std::string> images;
};

/// A partial update: only the engaged fields change.
struct product_patch {
  std::optional<std::string> sku;
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::optional<std::int64_t> price_cents;
  std::optional<std::string> currency;
  std::optional<std::string> category;
  std::optional<std::int64_t> stock;
  std::optional<std::int64_t> weight_grams;
  std::optional<std::vector<std::string>> images;

  bool empty() const {
    return !sku && !name && !description && !price_cents && !currency && !category && !stock
           && !weight_grams && !images;
  }
};

/// Keyset-paged listing: everything with id > after (in id order), optionally in one category.
struct product_query {
  std::optional<std::string> category;
  std::optional<std::string> after_id;
  std::int32_t limit = 20;
};

struct product_page {
  std::vector<product> items;
  std::optional<std::string> next_after_id; ///< null on the last page
};

} // namespace model

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, field_error& x) {
  return f(x.field, x.message);
}

namespace model {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, product& x) {
  return f(x.id, x.sku, x.name, x.description, x.price_cents, x.currency, x.category, x.stock,
           x.weight_grams, x.images, x.version, x.created_at_ms, x.updated_at_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, product_draft& x) {
  return f(x.sku, x.name, x.description, x.price_cents, x.currency, x.category, x.stock,
           x.weight_grams, x.images);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, product_patch& x) {
  return f(x.sku, x.name, x.description, x.price_cents, x.currency, x.category, x.stock,
           x.weight_grams, x.images);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, product_query& x) {
  return f(x.category, x.after_id, x.limit);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, product_page& x) {
  return f(x.items, x.next_after_id);
}

} // namespace model
} // namespace emporium
