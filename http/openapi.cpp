#include "http/openapi.hpp"

#include "http/order_codec.hpp"
#include "http/route_table.hpp"
#include "http/search_codec.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <stdexcept>

namespace emporium::http::openapi {

namespace {

using json = nlohmann::json;

json schema_ref(const std::string& name) {
  return {{"$ref", "#/components/schemas/" + name}};
}
json param_ref(const std::string& name) {
  return {{"$ref", "#/components/parameters/" + name}};
}
json header_ref(const std::string& name) {
  return {{"$ref", "#/components/headers/" + name}};
}
json response_ref(const std::string& name) {
  return {{"$ref", "#/components/responses/" + name}};
}

/// Headers on every answer: the request id and the rate limit's state.
json common_headers() {
  return {{"X-Request-Id", header_ref("X-Request-Id")},
          {"X-Emporium-Node", header_ref("X-Emporium-Node")},
          {"RateLimit-Limit", header_ref("RateLimit-Limit")},
          {"RateLimit-Remaining", header_ref("RateLimit-Remaining")},
          {"RateLimit-Reset", header_ref("RateLimit-Reset")}};
}

/// Headers on a probe's answer: probes are never rate limited, so no RateLimit headers.
json probe_headers() {
  return {{"X-Request-Id", header_ref("X-Request-Id")},
          {"X-Emporium-Node", header_ref("X-Emporium-Node")}};
}

json json_content(const json& schema) {
  return {{"application/json", {{"schema", schema}}}};
}

json string_schema(const std::string& description) {
  return {{"type", "string"}, {"description", description}};
}

json integer(std::int64_t minimum, std::optional<std::int64_t> maximum = std::nullopt) {
  json j{{"type", "integer"}, {"format", "int64"}, {"minimum", minimum}};
  if (maximum)
    j["maximum"] = *maximum;
  return j;
}

json id_schema(const std::string& prefix) {
  return {{"type", "string"},
          {"pattern", "^" + prefix + "_[0-9A-HJKMNP-TV-Z]{26}$"},
          {"description",
           "An opaque id (a ULID with the type prefix " + prefix + "_), ordered by creation time"}};
}

json timestamp() {
  return {{"type", "string"}, {"format", "date-time"}, {"description", "RFC 3339, UTC"}};
}

json object(json properties, std::vector<std::string> required, bool closed = true) {
  json j{{"type", "object"}, {"properties", std::move(properties)}};
  if (!required.empty())
    j["required"] = required;
  if (closed)
    j["additionalProperties"] = false;
  return j;
}

json nullable(const json& schema) {
  return {{"oneOf", {schema, {{"type", "null"}}}}};
}

// -- components -----------------------------------------------------------------------------------

json schemas() {
  json s;
  s["FieldError"] = object({{"field", string_schema("The offending field (JSON path or name)")},
                            {"message", string_schema("What is wrong with it")}},
                           {"field", "message"});
  s["Problem"] = {{"type", "object"},
                  {"description", "RFC 9457 problem details"},
                  {"properties",
                   {{"type", {{"type", "string"}, {"format", "uri-reference"}}},
                    {"title", {{"type", "string"}}},
                    {"status", {{"type", "integer"}, {"minimum", 400}, {"maximum", 599}}},
                    {"detail", {{"type", "string"}}},
                    {"instance",
                     {{"type", "string"},
                      {"format", "uri-reference"},
                      {"description", "The request id (X-Request-Id) of the failed request"}}},
                    {"errors",
                     {{"type", "array"},
                      {"items", schema_ref("FieldError")},
                      {"description", "One entry per invalid field (400 only)"}}}}},
                  {"required", {"type", "title", "status", "detail"}}};

  json product_fields{
    {"sku",
     {{"type", "string"},
      {"minLength", 1},
      {"maxLength", 64},
      {"pattern", "^[A-Za-z0-9._-]+$"},
      {"description", "Unique stock-keeping unit"}}},
    {"name", {{"type", "string"}, {"minLength", 1}, {"maxLength", 200}}},
    {"description", {{"type", "string"}, {"maxLength", 10000}}},
    {"price_cents", integer(0, 10'000'000'000LL)},
    {"currency", {{"type", "string"}, {"pattern", "^[A-Z]{3}$"}, {"description", "ISO 4217 code"}}},
    {"category",
     {{"type", "string"}, {"minLength", 1}, {"maxLength", 64}, {"pattern", "^[a-z0-9_-]+$"}}},
    {"stock", integer(0, 1'000'000'000)},
    {"weight_grams", integer(0, 1'000'000'000)},
    {"images",
     {{"type", "array"},
      {"maxItems", 20},
      {"items", {{"type", "string"}, {"format", "uri"}, {"maxLength", 2048}}}}}};
  auto product = product_fields;
  product["id"] = id_schema("prod");
  product["created_at"] = timestamp();
  product["updated_at"] = timestamp();
  s["Product"] = object(product,
                        {"id", "sku", "name", "description", "price_cents", "currency", "category",
                         "stock", "weight_grams", "images", "created_at", "updated_at"},
                        false);
  s["ProductCreate"] = object(product_fields, {"sku", "name", "price_cents", "currency", "stock"});
  s["ProductCreate"]["description"] =
    "Defaults: description \"\", category \"uncategorized\", weight_grams 0, images []";
  s["ProductPatch"] = object(product_fields, {});
  s["ProductPatch"]["minProperties"] = 1;
  s["ProductPage"] = object({{"items", {{"type", "array"}, {"items", schema_ref("Product")}}},
                             {"next_cursor", nullable({{"type", "string"}})}},
                            {"items", "next_cursor"}, false);

  s["SearchHit"] = object(
    {{"id", id_schema("prod")},
     {"sku", {{"type", "string"}}},
     {"name", {{"type", "string"}}},
     {"price_cents", integer(0)},
     {"currency", {{"type", "string"}, {"pattern", "^[A-Z]{3}$"}}},
     {"category", {{"type", "string"}}},
     {"in_stock", {{"type", "boolean"}}},
     {"snippet",
      {{"type", "string"},
       {"description", "HTML-escaped text around the match, matched words in <mark>"}}},
     {"created_at", timestamp()}},
    {"id", "sku", "name", "price_cents", "currency", "category", "in_stock", "snippet",
     "created_at"},
    false);
  s["SearchResult"] = object(
    {{"items", {{"type", "array"}, {"items", schema_ref("SearchHit")}}},
     {"next_cursor", nullable({{"type", "string"}})},
     {"facets",
      object({{"category",
               {{"type", "object"},
                {"additionalProperties", integer(0)},
                {"description", "Matching products per category"}}},
              {"price",
               {{"type", "array"},
                {"items",
                 object({{"min", integer(0)}, {"max", nullable(integer(0))}, {"count", integer(0)}},
                        {"min", "max", "count"}, false)}}}},
             {"category", "price"}, false)},
     {"total", integer(0)},
     {"total_is_estimate", {{"type", "boolean"}}},
     {"facets_are_estimate", {{"type", "boolean"}}},
     {"match",
      {{"type", "string"},
       {"enum", {"full_text", "fuzzy", "none"}},
       {"description", "How q matched: full-text, fuzzy (trigram) fallback, or no q"}}}},
    {"items", "next_cursor", "facets"}, false);

  s["Loyalty"] = object({{"points", integer(0)},
                         {"tier", {{"type", "string"}, {"enum", {"bronze", "silver", "gold"}}}}},
                        {"points", "tier"}, false);
  s["CustomerCreate"] = object(
    {{"email", {{"type", "string"}, {"format", "email"}, {"maxLength", 254}}},
     {"name", {{"type", "string"}, {"minLength", 1}, {"maxLength", 200}}},
     {"password",
      {{"type", "string"},
       {"minLength", 8},
       {"maxLength", 128},
       {"writeOnly", true},
       {"description", "Stored only as a memory-hard hash; never returned"}}}},
    {"email", "name", "password"});
  s["Customer"] = object({{"id", id_schema("cust")},
                          {"email", {{"type", "string"}, {"format", "email"}}},
                          {"name", {{"type", "string"}}},
                          {"loyalty", schema_ref("Loyalty")},
                          {"created_at", timestamp()}},
                         {"id", "email", "name", "loyalty", "created_at"}, false);
  s["Login"] = object({{"email", {{"type", "string"}, {"format", "email"}}},
                       {"password", {{"type", "string"}, {"writeOnly", true}}}},
                      {"email", "password"});
  s["Session"] = object(
    {{"token", string_schema("Bearer token for the Authorization header, opaque (signed by the "
                             "server; stored only as a hash)")},
     {"customer_id", id_schema("cust")},
     {"expires_at", timestamp()}},
    {"token", "customer_id", "expires_at"}, false);

  s["Address"] = object(
    {{"name", {{"type", "string"}, {"minLength", 1}}},
     {"line1", {{"type", "string"}, {"minLength", 1}}},
     {"line2", {{"type", "string"}}},
     {"city", {{"type", "string"}, {"minLength", 1}}},
     {"region", {{"type", "string"}}},
     {"postal_code", {{"type", "string"}, {"minLength", 1}}},
     {"country",
      {{"type", "string"}, {"pattern", "^[A-Z]{2}$"}, {"description", "ISO 3166-1 alpha-2"}}}},
    {"name", "line1", "city", "postal_code", "country"});
  json line = object({{"product_id", id_schema("prod")},
                      {"name", {{"type", "string"}}},
                      {"unit_price_cents", integer(0)},
                      {"quantity", integer(1)},
                      {"line_total_cents", integer(0)}},
                     {"product_id", "name", "unit_price_cents", "quantity", "line_total_cents"},
                     false);
  s["Line"] = line;
  s["Cart"] = object({{"id", id_schema("cart")},
                      {"customer_id", id_schema("cust")},
                      {"items", {{"type", "array"}, {"items", schema_ref("Line")}}},
                      {"currency", {{"type", "string"}, {"pattern", "^[A-Z]{3}$"}}},
                      {"subtotal_cents", integer(0)},
                      {"shipping_cents", nullable(integer(0))},
                      {"total_cents", nullable(integer(0))},
                      {"shipping_problem",
                       {{"type", "string"},
                        {"description",
                         "Present when no shipping can be quoted for these items "
                         "(shipping_cents and total_cents are then null); "
                         "checkout would answer 422"}}},
                      {"updated_at", timestamp()},
                      {"expires_at", timestamp()}},
                     {"id", "customer_id", "items", "currency", "subtotal_cents", "shipping_cents",
                      "total_cents", "updated_at", "expires_at"},
                     false);
  s["CartItem"] = object(
    {{"quantity", {{"type", "integer"}, {"minimum", 0}, {"description", "0 removes the line"}}}},
    {"quantity"});
  s["Checkout"] = object({{"shipping_address", schema_ref("Address")}}, {"shipping_address"});
  s["OrderCreate"] = object(
    {{"items",
      {{"type", "array"},
       {"minItems", 1},
       {"items", object({{"product_id", id_schema("prod")}, {"quantity", integer(1)}},
                        {"product_id", "quantity"})}}},
     {"shipping_address", schema_ref("Address")}},
    {"items", "shipping_address"});
  s["Payment"] = object({{"status", {{"type", "string"}}},
                         {"provider", {{"type", "string"}}},
                         {"reference", {{"type", "string"}}}},
                        {"status", "provider", "reference"}, false);
  s["Order"] = object(
    {{"id", id_schema("ord")},
     {"customer_id", id_schema("cust")},
     {"status",
      {{"type", "string"},
       {"enum", {"pending_payment", "paid", "shipped", "delivered", "cancelled"}}}},
     {"items", {{"type", "array"}, {"items", schema_ref("Line")}}},
     {"currency", {{"type", "string"}, {"pattern", "^[A-Z]{3}$"}}},
     {"subtotal_cents", integer(0)},
     {"shipping_cents", integer(0)},
     {"total_cents", integer(0)},
     {"shipping_address", schema_ref("Address")},
     {"payment", nullable(schema_ref("Payment"))},
     {"created_at", timestamp()},
     {"updated_at", timestamp()}},
    {"id", "customer_id", "status", "items", "currency", "subtotal_cents", "shipping_cents",
     "total_cents", "shipping_address", "payment", "created_at", "updated_at"},
    false);
  s["OrderPage"] = object({{"items", {{"type", "array"}, {"items", schema_ref("Order")}}},
                           {"next_cursor", nullable({{"type", "string"}})}},
                          {"items", "next_cursor"}, false);
  s["PaymentRequest"] = object(
    {{"payment_method",
      {{"type", "string"},
       {"pattern", "^tok_"},
       {"description",
        "A provider token; the simulated provider accepts tok_visa and declines "
        "tok_declined"}}}},
    {"payment_method"});
  s["OrderEvent"] = object({{"order_id", id_schema("ord")},
                            {"status", {{"$ref", "#/components/schemas/Order/properties/status"}}}},
                           {"order_id", "status"}, false);
  s["StockEvent"] = object({{"product_id", id_schema("prod")}, {"stock", integer(0)}},
                           {"product_id", "stock"}, false);
  const json topic = {{"type", "string"},
                      {"pattern", "^(product|order):.+$"},
                      {"description",
                       "product:ID for stock changes (anyone), order:ID for status changes (its "
                       "customer or the admin; authenticate the upgrade request with "
                       "Authorization: Bearer or ?access_token=)"}};
  s["WsSubscribe"] = {
    {"description",
     "A message the client sends on /ws (a text frame). A malformed one is answered with an "
     "error of status 400 and the connection stays"},
    {"oneOf",
     {object({{"subscribe", topic},
              {"after",
               {{"type", "integer"},
                {"minimum", 0},
                {"description",
                 "Resume: every event after this seq first (410 when the outbox no longer "
                 "keeps them)"}}}},
             {"subscribe"}),
      object({{"unsubscribe", topic}}, {"unsubscribe"})}}};
  s["WsEvent"] = {
    {"description",
     "A message the server pushes on /ws (text frames, JSON). `subscribed` comes before any "
     "event of its subscription; each event's seq is one more than the one before"},
    {"oneOf",
     {object({{"topic", {{"type", "string"}}},
              {"seq", integer(1)},
              {"type", {{"type", "string"}, {"enum", {"stock_changed", "order_status"}}}},
              {"data", {{"oneOf", {schema_ref("StockEvent"), schema_ref("OrderEvent")}}}}},
             {"topic", "seq", "type", "data"}),
      object({{"type", {{"type", "string"}, {"const", "subscribed"}}},
              {"topic", {{"type", "string"}}},
              {"seq", integer(0)}},
             {"type", "topic", "seq"}),
      object({{"type", {{"type", "string"}, {"const", "unsubscribed"}}},
              {"topic", {{"type", "string"}}}},
             {"type", "topic"}),
      object({{"type", {{"type", "string"}, {"const", "error"}}},
              {"topic", nullable({{"type", "string"}})},
              {"status", {{"type", "integer"}, {"enum", {400, 404, 410, 429, 503}}}},
              {"detail", {{"type", "string"}}}},
             {"type", "topic", "status", "detail"})}}};
  s["ClusterMember"] = object({{"node", {{"type", "string"}}},
                               {"state", {{"type", "string"}, {"enum", {"self", "up", "down"}}}}},
                              {"node", "state"}, false);
  s["Cluster"] = object(
    {{"node", {{"type", "string"}, {"description", "This node (host:port)"}}},
     {"ring_version",
      {{"type", "integer"}, {"description", "Grows with every change of the live members"}}},
     {"serving",
      {{"type", "boolean"},
       {"description", "Whether this node sees a majority of the members and serves entities"}}},
     {"configured", {{"type", "integer"}}},
     {"live", {{"type", "integer"}}},
     {"members", {{"type", "array"}, {"items", schema_ref("ClusterMember")}}}},
    {"node", "ring_version", "serving", "configured", "live", "members"}, false);
  s["ClusterOwner"] = object({{"id", {{"type", "string"}}},
                              {"owner", {{"type", "string"}}},
                              {"ring_version", {{"type", "integer"}}}},
                             {"id", "owner", "ring_version"}, false);
  s["Health"] = object({{"status", {{"type", "string"}, {"enum", {"ok", "ready"}}}}}, {"status"},
                       false);
  return s;
}

json parameters() {
  json p;
  p["Limit"] = {{"name", "limit"},
                {"in", "query"},
                {"description", "Page size; outside " + std::to_string(page_limit_min) + ".."
                                  + std::to_string(page_limit_max) + " answers 400"},
                {"schema",
                 {{"type", "integer"},
                  {"minimum", page_limit_min},
                  {"maximum", page_limit_max},
                  {"default", page_limit_default}}}};
  p["Cursor"] = {{"name", "cursor"},
                 {"in", "query"},
                 {"description",
                  "next_cursor of the previous page; a cursor not issued by this "
                  "server answers 400"},
                 {"schema", {{"type", "string"}}}};
  p["Category"] = {
    {"name", "category"},
    {"in", "query"},
    {"schema", {{"type", "string"}, {"minLength", 1}, {"maxLength", category_max_chars}}}};
  p["Country"] = {{"name", "country"},
                  {"in", "query"},
                  {"description",
                   "The country shipping is quoted for (ISO 3166-1 alpha-2); "
                   "default: the server's shipping.default_country"},
                  {"schema", {{"type", "string"}, {"pattern", "^[A-Z]{2}$"}}}};
  p["Upgrade"] = {{"name", "Upgrade"},
                  {"in", "header"},
                  {"required", true},
                  {"schema", {{"type", "string"}, {"const", "websocket"}}}};
  p["LastEventId"] = {{"name", "Last-Event-ID"},
                      {"in", "header"},
                      {"description", "Resume after this seq (an integer >= 0; else 400)"},
                      {"schema", {{"type", "string"}, {"pattern", "^[0-9]+$"}}}};
  p["After"] = {{"name", "after"},
                {"in", "query"},
                {"description", "Resume after this seq, when Last-Event-ID is not sent"},
                {"schema", {{"type", "integer"}, {"minimum", 0}}}};
  p["AccessToken"] = {{"name", "access_token"},
                      {"in", "query"},
                      {"description",
                       "The bearer token, for clients that cannot set the Authorization "
                       "header (browsers' WebSocket and EventSource)"},
                      {"schema", {{"type", "string"}}}};
  p["IfNoneMatch"] = {{"name", "If-None-Match"},
                      {"in", "header"},
                      {"description", "ETags of a cached copy; a match answers 304"},
                      {"schema", {{"type", "string"}}}};
  p["IfMatch"] = {{"name", "If-Match"},
                  {"in", "header"},
                  {"description", "The ETag the change is based on; another version answers 412"},
                  {"schema", {{"type", "string"}}}};
  p["IdempotencyKey"] = {
    {"name", "Idempotency-Key"},
    {"in", "header"},
    {"description",
     "Repeats with the same key and body return the original answer when it was "
     "the order or a verdict on the request (400, 422); a refusal that stock, "
     "open orders or the cart decide (409) is not kept, so a retry runs again. "
     "The same key with another body answers 422. Scoped to the customer."},
    {"schema",
     {{"type", "string"}, {"minLength", 1}, {"maxLength", codec::idempotency_key_max_chars}}}};
  p["XRequestId"] = {{"name", "X-Request-Id"},
                     {"in", "header"},
                     {"description",
                      "The caller's id for this request (1..128 visible ASCII characters); "
                      "otherwise the server makes one. Echoed on the answer, in the logs and as "
                      "the problem's instance."},
                     {"schema", {{"type", "string"}, {"pattern", "^[!-~]{1,128}$"}}}};
  return p;
}

json headers() {
  auto int_header = [](const std::string& description) {
    return json{{"description", description}, {"schema", {{"type", "integer"}, {"minimum", 0}}}};
  };
  return {
    {"X-Request-Id",
     {{"description", "The request's id: the caller's X-Request-Id, or one the server made"},
      {"schema", {{"type", "string"}}}}},
    {"X-Emporium-Node",
     {{"description",
       "The node that served the request (host:port; its node address in a "
       "cluster)"},
      {"schema", {{"type", "string"}}}}},
    {"RateLimit-Limit", int_header("The client's bucket size for this route class")},
    {"RateLimit-Remaining", int_header("Requests left in the bucket now")},
    {"RateLimit-Reset", int_header("Seconds until the bucket is full again")},
    {"Retry-After", int_header("Seconds to wait before trying again")},
    {"ETag", {{"description", "The entity's version"}, {"schema", {{"type", "string"}}}}},
    {"Location",
     {{"description", "The created resource"},
      {"schema", {{"type", "string"}, {"format", "uri-reference"}}}}},
    {"Allow", {{"description", "The methods the path supports"}, {"schema", {{"type", "string"}}}}},
  };
}

json problem_response(const std::string& description, json extra = json::object()) {
  json h = common_headers();
  for (auto& [k, v] : extra.items())
    h[k] = v;
  return {{"description", description},
          {"headers", h},
          {"content", {{"application/problem+json", {{"schema", schema_ref("Problem")}}}}}};
}

json responses() {
  return {
    {"BadRequest", problem_response("Invalid input: the problem lists each field in errors[]")},
    {"Unauthorized",
     problem_response(
       "No or unknown credentials",
       {{"WWW-Authenticate", {{"description", "Bearer"}, {"schema", {{"type", "string"}}}}}})},
    {"PaymentRequired", problem_response("The payment provider declined the payment")},
    {"BadGateway", problem_response("The payment provider failed, also after retries; nothing "
                                    "was charged and the order stays unpaid")},
    {"Forbidden", problem_response("The credentials do not allow this")},
    {"NotFound", problem_response("No such resource (or not one of the caller's)")},
    {"MethodNotAllowed",
     problem_response("The path exists with other methods", {{"Allow", header_ref("Allow")}})},
    {"Conflict", problem_response("The request conflicts with the resource's state")},
    {"PreconditionFailed", problem_response("If-Match names another version")},
    {"Gone", problem_response("The events after the resume point are no longer kept "
                              "(retention.events_h): subscribe without one")},
    {"PayloadTooLarge", problem_response("The body exceeds the limit (1 MiB by default)")},
    {"UnsupportedMediaType", problem_response("The body is not application/json")},
    {"Unprocessable", problem_response("Well-formed but cannot be processed (an Idempotency-Key "
                                       "reused with another body, an address no shipping zone "
                                       "serves)")},
    {"TooManyRequests", problem_response("The client's token bucket for this route class is empty",
                                         {{"Retry-After", header_ref("Retry-After")}})},
    {"HeadersTooLarge", problem_response("The request header block exceeds 16 KiB")},
    {"Internal", problem_response("An unexpected failure")},
    {"Unavailable", problem_response("A dependency (PostgreSQL) is down; try again later",
                                     {{"Retry-After", header_ref("Retry-After")}})},
    {"Timeout", problem_response("The request did not complete in time")},
  };
}

// -- operations -----------------------------------------------------------------------------------

const std::map<int, std::string> error_names{{400, "BadRequest"},
                                             {401, "Unauthorized"},
                                             {402, "PaymentRequired"},
                                             {403, "Forbidden"},
                                             {404, "NotFound"},
                                             {409, "Conflict"},
                                             {410, "Gone"},
                                             {412, "PreconditionFailed"},
                                             {413, "PayloadTooLarge"},
                                             {415, "UnsupportedMediaType"},
                                             {422, "Unprocessable"},
                                             {429, "TooManyRequests"},
                                             {431, "HeadersTooLarge"},
                                             {500, "Internal"},
                                             {502, "BadGateway"},
                                             {503, "Unavailable"},
                                             {504, "Timeout"}};

/// The parameters GET /search validates in its codec (search_codec::decode_query).
std::vector<json> search_parameters() {
  namespace sc = search_codec;
  return {
    {{"name", "q"},
     {"in", "query"},
     {"description", "Full-text query"},
     {"schema", {{"type", "string"}, {"maxLength", sc::max_text_chars}}}},
    {{"name", "category"},
     {"in", "query"},
     {"description", "Repeat to match any of several categories"},
     {"style", "form"},
     {"explode", true},
     {"schema",
      {{"type", "array"},
       {"maxItems", sc::max_categories},
       {"items", {{"type", "string"}, {"minLength", 1}, {"maxLength", category_max_chars}}}}}},
    {{"name", "min_price"},
     {"in", "query"},
     {"description", "Minor units, inclusive"},
     {"schema", {{"type", "integer"}, {"minimum", 0}, {"maximum", sc::max_price_cents}}}},
    {{"name", "max_price"},
     {"in", "query"},
     {"description", "Minor units, inclusive"},
     {"schema", {{"type", "integer"}, {"minimum", 0}, {"maximum", sc::max_price_cents}}}},
    {{"name", "in_stock"}, {"in", "query"}, {"schema", {{"type", "boolean"}}}},
    {{"name", "sort"},
     {"in", "query"},
     {"schema",
      {{"type", "string"},
       {"enum", {"relevance", "price_asc", "price_desc", "newest"}},
       {"default", "relevance"}}}},
    param_ref("Limit"),
    param_ref("Cursor")};
}

json query_parameter(query_kind k) {
  switch (k) {
    case query_kind::limit: return param_ref("Limit");
    case query_kind::cursor: return param_ref("Cursor");
    case query_kind::category: return param_ref("Category");
    case query_kind::country: return param_ref("Country");
  }
  return {};
}

/// The answers the document builds itself (route_spec::success_doc::special).
json special_response(const std::string& name, bool probe) {
  json headers = probe ? probe_headers() : common_headers();
  if (name == "not_modified") {
    headers["ETag"] = header_ref("ETag");
    return {{"description", "The cached copy named by If-None-Match is current"},
            {"headers", headers}};
  }
  if (name == "order_event_stream" || name == "product_event_stream") {
    const bool order = name == "order_event_stream";
    return {{"description",
             std::string{"Server-Sent Events, until the client leaves. First `retry: 2000` and "
                         "the comment `: subscribed <topic> seq <CURRENT>`, then one event per "
                         "change: `id: <seq>`, `event: "}
               + (order ? "order_status" : "stock_changed")
               + "`, `data: " + (order ? "OrderEvent" : "StockEvent")
               + "`; a `: keep-alive` comment every feeds.ping_s (15 s). Last-Event-ID (or "
                 "?after=) resumes after that seq. A client too slow to read its events is "
                 "disconnected"},
            {"headers", headers},
            {"content",
             {{"text/event-stream",
               {{"schema", {{"type", "string"}}},
                {"x-event-data", schema_ref(order ? "OrderEvent" : "StockEvent")}}}}}};
  }
  if (name == "websocket") {
    headers["Upgrade"] = {{"schema", {{"type", "string"}, {"const", "websocket"}}}};
    headers["Connection"] = {{"schema", {{"type", "string"}}}};
    headers["Sec-WebSocket-Accept"] = {{"schema", {{"type", "string"}}}};
    return {{"description",
             "Switching to the WebSocket protocol. The client sends WsSubscribe messages; the "
             "server pushes WsEvent messages (text frames, JSON)"},
            {"headers", headers}};
  }
  if (name == "metrics_text")
    return {{"description", "Prometheus text exposition format 0.0.4"},
            {"headers", headers},
            {"content", {{"text/plain; version=0.0.4", {{"schema", {{"type", "string"}}}}}}}};
  if (name == "any_object")
    return {{"description", "The OpenAPI 3.1 document"},
            {"headers", headers},
            {"content", json_content({{"type", "object"}})}};
  throw std::logic_error("openapi: no special response " + name);
}

/// A shared error answer as a probe gives it: without the RateLimit headers.
json probe_error(const std::string& name) {
  json r = responses().at(name);
  r["headers"] = probe_headers();
  return r;
}

json build_operation(const route_spec& r) {
  json j{{"operationId", r.operation_id}, {"tags", {r.tag}}, {"summary", r.summary}};
  std::vector<json> params;
  for (const auto& p : r.path_ids)
    params.push_back(
      {{"name", p.name},
       {"in", "path"},
       {"required", true},
       {"description", p.prefix == nullptr ? std::string{p.description}
                                           : std::string{p.description} + " (" + p.prefix
                                               + "_...); a malformed id answers 404"},
       {"schema", {{"type", "string"}}}});
  for (auto k : r.query)
    params.push_back(query_parameter(k));
  if (r.codec_query && std::string{r.codec_query} == "search")
    for (auto& p : search_parameters())
      params.push_back(std::move(p));
  for (const auto* h : r.header_params)
    params.push_back(param_ref(h));
  params.push_back(param_ref("XRequestId"));
  j["parameters"] = params;
  switch (r.who) {
    case access::anyone: j["security"] = json::array(); break;
    case access::admin:
    case access::admin_by_runtime: j["security"] = {{{"adminKey", json::array()}}}; break;
    case access::customer: j["security"] = {{{"customerToken", json::array()}}}; break;
    case access::signed_in:
      j["security"] = {{{"customerToken", json::array()}}, {{"adminKey", json::array()}}};
      break;
  }
  if (r.body)
    j["requestBody"] = {{"required", true}, {"content", json_content(schema_ref(r.body))}};
  json res = json::object();
  for (const auto& ok_doc : r.success) {
    if (ok_doc.special) {
      res[std::to_string(ok_doc.status)] = special_response(ok_doc.special, r.probe);
      continue;
    }
    json headers = r.probe ? probe_headers() : common_headers();
    for (const auto* h : ok_doc.headers)
      headers[h] = header_ref(h);
    json one{{"description", ok_doc.description}, {"headers", headers}};
    if (ok_doc.schema)
      one["content"] = json_content(schema_ref(ok_doc.schema));
    res[std::to_string(ok_doc.status)] = one;
  }
  std::vector<int> errors = r.errors;
  if (!r.probe) {
    errors.push_back(429);
    errors.push_back(431);
  }
  errors.push_back(500);
  if (r.uses_database) {
    errors.push_back(503);
    errors.push_back(504);
  }
  if (r.body) {
    errors.push_back(400);
    errors.push_back(413);
    errors.push_back(415);
  }
  if (r.who != access::anyone)
    errors.push_back(401);
  if (r.who == access::admin || r.who == access::admin_by_runtime)
    errors.push_back(403);
  for (int e : errors)
    res[std::to_string(e)] = r.probe ? probe_error(error_names.at(e))
                                     : response_ref(error_names.at(e));
  j["responses"] = res;
  return j;
}

json build() {
  json doc;
  doc["openapi"] = "3.1.0";
  doc["info"] = {
    {"title", "Emporium"},
    {"version", "0.1.0"},
    {"summary", "An e-commerce backend on actors"},
    {"description",
     "JSON in and out (UTF-8). Money is an integer count of minor units (price_cents) plus an "
     "ISO 4217 currency. Timestamps are RFC 3339 UTC. Every error is application/problem+json "
     "(RFC 9457). Every answer carries X-Request-Id and RateLimit-Limit, RateLimit-Remaining "
     "and RateLimit-Reset: each client (a customer with a live session, the admin key, else "
     "the address) has a token bucket per route class (reads, writes, logins, sign-ups); an "
     "empty bucket answers 429 with Retry-After. The health probes (/healthz, /readyz, "
     "/metrics) are never limited and carry no RateLimit headers. "
     "Request header blocks are limited to 16 KiB (431), bodies to 1 MiB (413); pipelined "
     "requests are answered in order."}};
  doc["servers"] = {{{"url", "/"}}};
  doc["tags"] = {{{"name", "products"}},  {{"name", "search"}}, {{"name", "customers"}},
                 {{"name", "carts"}},     {{"name", "orders"}}, {{"name", "realtime"}},
                 {{"name", "operations"}}};
  json paths = json::object();
  for (const auto& r : route_table()) {
    std::string method = r.method;
    std::transform(method.begin(), method.end(), method.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    paths[r.pattern][method] = build_operation(r);
  }
  doc["paths"] = paths;
  doc["components"] = {{"schemas", schemas()},
                       {"parameters", parameters()},
                       {"headers", headers()},
                       {"responses", responses()},
                       {"securitySchemes",
                        {{"adminKey",
                          {{"type", "http"},
                           {"scheme", "bearer"},
                           {"description", "The admin key (auth.admin_key) as a Bearer token"}}},
                         {"customerToken",
                          {{"type", "http"},
                           {"scheme", "bearer"},
                           {"description", "A customer's token from POST /sessions"}}}}}};
  return doc;
}

} // namespace

const std::string& document() {
  static const std::string text = build().dump();
  return text;
}

std::vector<operation> documented_operations() {
  std::vector<operation> out;
  auto doc = json::parse(document());
  for (auto& [path, item] : doc["paths"].items())
    for (auto& [method, op] : item.items()) {
      std::string m = method;
      std::transform(m.begin(), m.end(), m.begin(),
                     [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
      out.push_back({m, path});
    }
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace emporium::http::openapi
