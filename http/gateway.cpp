#include "http/gateway.hpp"

#include "http/handler_support.hpp"
#include "persistence/ids.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <random>

namespace emporium::http::gateway {

namespace {

/// Headers a browser may send cross-origin (besides the CORS-safelisted ones).
constexpr const char* allowed_request_headers =
  "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-Id";
/// Headers a browser script may read from an answer.
constexpr const char* exposed_headers = "ETag, Location, Retry-After, RateLimit-Limit, "
                                        "RateLimit-Remaining, RateLimit-Reset, X-Request-Id";
constexpr const char* preflight_max_age = "600";

bool uri_char(char c) {
  // RFC 3986 unreserved, sub-delims, ':' '@' '/' '?' and '%' of an existing escape.
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  switch (c) {
    case '-': case '.': case '_': case '~': case '!': case '$': case '&': case '\'': case '(':
    case ')': case '*': case '+': case ',': case ';': case '=': case ':': case '@': case '/':
    case '?':
      return true;
    default:
      return false;
  }
}

} // namespace

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128)
    return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

std::string new_request_id() {
  // Not a secret, only unique: a per-thread generator seeded from the OS is plenty.
  thread_local std::mt19937_64 gen{[] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }()};
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "req_";
  auto a = gen();
  auto b = gen();
  for (int i = 0; i < 16; ++i)
    out += hex[(a >> (i * 4)) & 0xf];
  for (int i = 0; i < 8; ++i)
    out += hex[(b >> (i * 4)) & 0xf];
  return out;
}

std::string instance_of(std::string_view request_id) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(request_id.size());
  for (char c : request_id) {
    if (uri_char(c)) {
      out += c;
    } else {
      auto u = static_cast<unsigned char>(c);
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 0xf];
    }
  }
  return out;
}

void add_problem_instance(response& res, std::string_view request_id) {
  if (res.content_type.rfind("application/problem+json", 0) != 0 || res.body.empty())
    return;
  auto j = nlohmann::json::parse(res.body, nullptr, false);
  if (!j.is_object() || j.contains("instance"))
    return;
  j["instance"] = instance_of(request_id);
  res.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

route_class classify(std::string_view method, std::string_view path) {
  if (method == "GET" || method == "HEAD" || method == "OPTIONS")
    return route_class::read;
  if (method == "POST" && path == "/sessions")
    return route_class::login;
  return route_class::write;
}

namespace {
constexpr std::size_t token_mac_chars = 32;
}

std::string token_key(std::string_view admin_key_hash) {
  return persistence::sha256_hex(std::string{"emporium/session-token/v1:"}
                                 + std::string{admin_key_hash});
}

std::string sign_token(std::string_view token, std::string_view key) {
  return std::string{token} + "."
         + persistence::hmac_sha256_hex(key, token).substr(0, token_mac_chars);
}

std::optional<std::string_view> signed_token(std::string_view presented, std::string_view key) {
  auto dot = presented.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || presented.size() - dot - 1 != token_mac_chars)
    return std::nullopt;
  auto token = presented.substr(0, dot);
  auto expected = persistence::hmac_sha256_hex(key, token).substr(0, token_mac_chars);
  if (!persistence::constant_time_equal(expected, presented.substr(dot + 1)))
    return std::nullopt;
  return token;
}

client_identity identify(const request& req, route_class c, std::string_view token_key,
                         std::string_view admin_key_hash) {
  if (c != route_class::login) {
    auto presented = bearer_token(req);
    if (!presented.empty()) {
      // The token itself never leaves this function: only its hash is kept or logged.
      auto token = signed_token(presented, token_key);
      auto hash = persistence::sha256_hex(token ? *token : presented);
      if (token || persistence::constant_time_equal(hash, admin_key_hash))
        return {"t:" + hash, "token:" + hash.substr(0, 12)};
      return {"a:" + req.remote, req.remote + " unverified-token:" + hash.substr(0, 12)};
    }
  }
  return {"a:" + req.remote, req.remote};
}

// -- CORS -----------------------------------------------------------------------------------------

cors_policy::cors_policy(std::vector<std::string> origins) : origins_(std::move(origins)) {
  any_ = std::find(origins_.begin(), origins_.end(), "*") != origins_.end();
}

std::string cors_policy::allow_origin(std::string_view origin) const {
  if (origin.empty() || origins_.empty())
    return {};
  if (any_)
    return "*";
  for (const auto& o : origins_)
    if (o.size() == origin.size()
        && std::equal(o.begin(), o.end(), origin.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a))
                    == std::tolower(static_cast<unsigned char>(b));
           }))
      return std::string{origin};
  return {};
}

bool cors_policy::is_preflight(const request& req) {
  return req.method == "OPTIONS" && !req.header("origin").empty()
         && !req.header("access-control-request-method").empty();
}

response cors_policy::options_answer(const request& req,
                                     const std::vector<std::string>& methods) const {
  std::vector<std::string> all = methods;
  if (std::find(all.begin(), all.end(), "GET") != all.end()
      && std::find(all.begin(), all.end(), "HEAD") == all.end())
    all.push_back("HEAD");
  all.push_back("OPTIONS");
  std::string list;
  for (const auto& m : all)
    list += (list.empty() ? "" : ", ") + m;
  response res;
  res.status = 204;
  res.content_type.clear();
  res.header("Allow", list);
  if (is_preflight(req) && !allow_origin(req.header("origin")).empty()) {
    res.header("Access-Control-Allow-Methods", list);
    res.header("Access-Control-Allow-Headers", allowed_request_headers);
    res.header("Access-Control-Max-Age", preflight_max_age);
  }
  if (enabled())
    res.header("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers");
  return res;
}

void cors_policy::decorate(response& res, std::string_view origin) const {
  if (!enabled())
    return;
  res.header("Vary", "Origin");
  auto allowed = allow_origin(origin);
  if (allowed.empty())
    return;
  res.header("Access-Control-Allow-Origin", allowed);
  res.header("Access-Control-Expose-Headers", exposed_headers);
}

} // namespace emporium::http::gateway
