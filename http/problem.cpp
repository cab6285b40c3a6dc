#include "http/problem.hpp"

#include <nlohmann/json.hpp>

namespace emporium::http {

namespace {

struct problem_kind {
  int status;
  const char* slug;
  const char* title;
};

problem_kind kind_of_status(int status) {
  switch (status) {
    case 400: return {400, "invalid-input", "The request is invalid"};
    case 401: return {401, "unauthorized", "Authentication is required"};
    case 402: return {402, "payment-declined", "The payment was declined"};
    case 403: return {403, "forbidden", "Not allowed"};
    case 404: return {404, "not-found", "Not found"};
    case 405: return {405, "method-not-allowed", "Method not allowed"};
    case 409: return {409, "conflict", "Conflict"};
    case 410: return {410, "gone", "No longer available"};
    case 412: return {412, "precondition-failed", "Precondition failed"};
    case 413: return {413, "payload-too-large", "The request body is too large"};
    case 415: return {415, "unsupported-media-type", "Unsupported media type"};
    case 422: return {422, "unprocessable", "The request cannot be processed"};
    case 429: return {429, "rate-limited", "Too many requests"};
    case 431: return {431, "headers-too-large", "The request headers are too large"};
    case 502: return {502, "bad-gateway", "An upstream service failed"};
    case 503: return {503, "unavailable", "Service unavailable"};
    case 504: return {504, "timeout", "The request timed out"};
    default: return {status, "internal", "Internal server error"};
  }
}

} // namespace

int status_of(errc code) {
  switch (code) {
    case errc::not_found: return 404;
    case errc::invalid_input:
    case errc::unknown_reference: return 400;
    case errc::conflict: return 409;
    case errc::precondition_failed: return 412;
    case errc::out_of_stock: return 409;
    case errc::unauthorized: return 401;
    case errc::forbidden: return 403;
    case errc::rate_limited: return 429;
    case errc::unavailable:
    case errc::moved: return 503;
    case errc::timeout: return 504;
    case errc::unprocessable: return 422;
    case errc::payment_declined: return 402;
    case errc::upstream_failed: return 502;
    case errc::gone: return 410;
    case errc::none:
    case errc::internal: return 500;
  }
  return 500;
}

response problem(int status, std::string detail, std::vector<field_error> errors) {
  auto kind = kind_of_status(status);
  nlohmann::json j{{"type", std::string{"/problems/"} + kind.slug},
                   {"title", kind.title},
                   {"status", status},
                   {"detail", std::move(detail)}};
  if (!errors.empty()) {
    auto& arr = j["errors"] = nlohmann::json::array();
    for (auto& e : errors)
      arr.push_back({{"field", std::move(e.field)}, {"message", std::move(e.message)}});
  }
  response res;
  res.status = status;
  res.content_type = "application/problem+json";
  // The detail may echo client input; replace rather than throw on invalid UTF-8.
  res.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (status == 401)
    res.header("WWW-Authenticate", "Bearer");
  if (status == 503)
    res.header("Retry-After", "1");
  return res;
}

response problem(const failure& f) {
  return problem(status_of(f.code), f.detail, f.errors);
}

} // namespace emporium::http
