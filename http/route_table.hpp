#pragma once
/// The one table of the HTTP API: every route declared once, with what each part of the server
/// needs to know about it. The router binds the handlers to it (routes.cpp, by operation id),
/// the gateway takes the rate-limit class, the probe flag and who may call from it, the fuzzers
/// (fuzz/) route and validate with it, and GET /openapi.json is generated from it.
///
/// No CAF and no Beast here: the fuzzers link this file without the actor runtime.

#include "config/settings.hpp"
#include "http/message.hpp"
#include "http/problem.hpp"
#include "http/rate_limiter.hpp"
#include "http/router.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace emporium::http {

// -- limits, shared by validation and the document ------------------------------------------------

inline constexpr int page_limit_min = 1;
inline constexpr int page_limit_max = 100;
inline constexpr int page_limit_default = 20;
inline constexpr std::size_t category_max_chars = 64;

// -- what a route is
// --------------------------------------------------------------------------------

/// Who may call a route. The gateway resolves the caller; the router answers 401/403 before the
/// handler runs when the caller does not fit. Owner checks (a customer's own cart, order) are
/// the runtime's: `customer` and `signed_in` routes pass the principal on.
enum class access {
  anyone,    ///< no credentials needed (a token, if any, only picks the rate-limit bucket)
  signed_in, ///< a customer (owner-checked by the runtime) or the admin
  customer,  ///< a customer only (owner-checked by the runtime); the admin gets 403
  admin,     ///< the admin key only
  /// Documented as the admin's; a customer is signed in and the runtime refuses it (403), so
  /// only the unauthenticated get 401 here.
  admin_by_runtime,
};

/// A query parameter and how it is validated.
enum class query_kind {
  limit,    ///< page size, page_limit_min..page_limit_max
  cursor,   ///< a cursor this server issued for ids of the route's `cursor_prefix`
  category, ///< 1..category_max_chars characters, no control characters
  country,  ///< ISO 3166-1 alpha-2, upper case
};

/// A path parameter that is an entity id: a malformed one answers 404 with `not_found`.
struct path_id {
  const char* name;      ///< as in the pattern, e.g. "product_id"
  const char* prefix;    ///< the id's type prefix, e.g. "prod"; nullptr: any text
  const char* not_found; ///< the 404's detail
  const char* description;
};

/// One success answer as documented.
struct success_doc {
  int status;
  const char* description;
  const char* schema; ///< a component schema name; nullptr: none
  /// Instead of the above: a response the document builds itself (openapi.cpp: not_modified,
  /// order_event_stream, product_event_stream, websocket, metrics_text, any_object).
  std::vector<const char*> headers = {}; ///< component headers beyond the common ones
  const char* special = nullptr;
};

struct route_spec {
  const char* method;
  const char* pattern;
  const char* operation_id; ///< also the key the handler is bound by (routes.cpp)
  const char* tag;
  const char* summary;
  access who = access::anyone;
  /// The rate-limit class; none: read for GET, write otherwise.
  std::optional<route_class> limit_class = std::nullopt;
  /// 403 detail for the admin on a customer route (`access::customer`).
  const char* forbidden_detail = nullptr;
  std::vector<path_id> path_ids = {};
  std::vector<query_kind> query = {};
  /// A query parameter this route does not know answers 400 (else it is ignored).
  bool strict_query = false;
  const char* cursor_prefix = ""; ///< for query_kind::cursor
  /// The route's codec validates the whole query itself; the document lists its parameters
  /// under this name (openapi.cpp).
  const char* codec_query = nullptr;
  std::vector<const char*> header_params = {}; ///< component parameter names (If-Match, ...)
  const char* body = nullptr;                  ///< request body schema name
  std::vector<success_doc> success = {};
  std::vector<int> errors = {}; ///< beyond the ones every operation has
  bool uses_database = true;
  /// A probe (load balancer, Prometheus): never rate limited, no RateLimit headers, no 429.
  bool probe = false;
  /// In the contract and the document, not served yet (the router skips it).
  bool routed = true;
};

/// Every route, in the document's order.
const std::vector<route_spec>& route_table();

/// The entry of `method` and `pattern` as the router matched them, or nullptr.
const route_spec* find_route(std::string_view method, std::string_view pattern);

/// A router over the routed entries of the table, each entry's handler from `bind` (called once
/// per entry); the matched route's `spec` points into the table.
router table_router(const std::function<handler(const route_spec&)>& bind);

// -- validation
// ---------------------------------------------------------------------------------------

/// The query parameters of a route, validated.
struct query_args {
  int limit = page_limit_default;
  std::optional<std::string> after_id; ///< the id a cursor names
  std::optional<std::string> category;
  std::optional<std::string> country;
};

/// Checks the path ids of `spec` in `params`: the 404 of the first malformed one, or nothing.
std::optional<response> check_path_ids(const route_spec& spec, const path_params& params);

/// Validates the query of `req` against `spec` into `out`; the 400 when some are invalid.
std::optional<response> check_query(const route_spec& spec, const request& req, query_args& out);

/// The route class of a request for the rate limiter: the matched route's (login for POST
/// /sessions, signup for POST /customers, read for GET, write otherwise); for a path no route
/// matches, read for GET, HEAD and OPTIONS, write otherwise.
route_class class_of(const route_spec* spec, std::string_view method);

} // namespace emporium::http
