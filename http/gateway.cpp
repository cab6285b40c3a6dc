#include "http/gateway.hpp"

#include "core/ids.hpp"
#include "http/handler_support.hpp"
#include "http/route_table.hpp"

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
constexpr const char* exposed_headers =
  "ETag, Location, Retry-After, RateLimit-Limit, "
  "RateLimit-Remaining, RateLimit-Reset, X-Request-Id, X-Emporium-Node";
constexpr const char* preflight_max_age = "600";

bool uri_char(char c) {
  // RFC 3986 unreserved, sub-delims, ':' '@' '/' '?' and '%' of an existing escape.
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
    case ':':
    case '@':
    case '/':
    case '?': return true;
    default: return false;
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

namespace {

/// The table's routes without handlers: what the gateway matches a request against.
const router& table_only() {
  static const router r = table_router([](const route_spec&) { return handler{}; });
  return r;
}

} // namespace

const route_spec* route_of(std::string_view method, std::string_view path) {
  auto m = table_only().match(method, path);
  return m.matched ? m.matched->spec : nullptr;
}

route_class classify(std::string_view method, std::string_view path) {
  return class_of(route_of(method, path), method);
}

namespace {

/// GET or HEAD of a route the table marks as a probe.
bool is_probe(std::string_view method, const route_spec* spec) {
  return (method == "GET" || method == "HEAD") && spec && spec->probe;
}

/// The bucket of a caller known by its address only (`key`: address_key of the address).
std::string address_bucket(std::string_view key) {
  return "a:" + std::string{key};
}

} // namespace

bool is_health_probe(std::string_view method, std::string_view path) {
  return is_probe(method, route_of(method, path));
}

std::string token_key(std::string_view admin_key_hash) {
  return core::sha256_hex(std::string{"emporium/session-token/v1:"} + std::string{admin_key_hash});
}

std::string sign_token(std::string_view token, std::string_view key) {
  return std::string{token} + "." + core::sign(key, token);
}

std::optional<std::string_view> signed_token(std::string_view presented, std::string_view key) {
  auto dot = presented.rfind('.');
  if (dot == std::string_view::npos || dot == 0)
    return std::nullopt;
  auto token = presented.substr(0, dot);
  if (!core::verify(key, token, presented.substr(dot + 1)))
    return std::nullopt;
  return token;
}

namespace {

std::string_view trim_blanks(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
    v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  return v;
}

bool port_text(std::string_view p) {
  return !p.empty() && p.size() <= 5
         && std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// One X-Forwarded-For entry: an address, optionally with a port (IPv6 then in brackets).
std::optional<config::ip_address> forwarded_entry(std::string_view e) {
  e = trim_blanks(e);
  if (!e.empty() && e.front() == '[') {
    auto close = e.find(']');
    if (close == std::string_view::npos)
      return std::nullopt;
    auto rest = e.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !port_text(rest.substr(1))))
      return std::nullopt;
    return config::parse_ip(e.substr(1, close - 1));
  }
  auto colon = e.find(':');
  if (colon != std::string_view::npos && e.find(':', colon + 1) == std::string_view::npos) {
    if (!port_text(e.substr(colon + 1)))
      return std::nullopt;
    e = e.substr(0, colon); // IPv4 with a port
  }
  return config::parse_ip(e);
}

bool trusted_address(const config::ip_address& a, const std::vector<config::cidr_block>& trusted) {
  return std::any_of(trusted.begin(), trusted.end(),
                     [&](const config::cidr_block& b) { return b.contains(a); });
}

} // namespace

std::vector<std::string_view> forwarded_for(const request& req) {
  std::vector<std::string_view> out;
  auto range = req.headers.equal_range("x-forwarded-for");
  for (auto it = range.first; it != range.second; ++it)
    out.emplace_back(it->second);
  return out;
}

std::string client_address(std::string_view peer,
                           const std::vector<std::string_view>& forwarded_for,
                           const std::vector<config::cidr_block>& trusted) {
  auto peer_ip = config::parse_ip(peer);
  if (!peer_ip)
    return std::string{peer};
  if (!trusted_address(*peer_ip, trusted))
    return peer_ip->text();
  // From the right: each trusted hop vouches for the entry to its left.
  config::ip_address client = *peer_ip;
  for (auto v = forwarded_for.rbegin(); v != forwarded_for.rend(); ++v) {
    std::string_view list = *v;
    while (!list.empty()) {
      auto comma = list.rfind(',');
      auto entry = comma == std::string_view::npos ? list : list.substr(comma + 1);
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(0, comma);
      if (trim_blanks(entry).empty())
        continue; // "a, , b": an empty element says nothing
      auto ip = forwarded_entry(entry);
      if (!ip)
        return client.text();
      client = *ip;
      if (!trusted_address(client, trusted))
        return client.text();
    }
  }
  return client.text();
}

std::string address_key(std::string_view address) {
  auto ip = config::parse_ip(address);
  if (!ip)
    return std::string{address};
  if (!ip->v6)
    return ip->text();
  return config::cidr_block::of(*ip, 64).text();
}

std::vector<config::cidr_block> parse_trusted(const std::vector<std::string>& blocks) {
  std::vector<config::cidr_block> out;
  for (const auto& b : blocks) {
    auto start = b.find_first_not_of(" \t");
    auto end = b.find_last_not_of(" \t");
    if (start == std::string::npos)
      continue;
    if (auto c = config::parse_cidr(std::string_view{b}.substr(start, end - start + 1)))
      out.push_back(*c);
  }
  return out;
}

client_identity identify(const request& req, route_class c, std::string_view token_key,
                         std::string_view admin_key_hash, std::string_view client_address,
                         std::string_view known_key) {
  client_identity by_address{
    address_bucket(known_key.empty() ? address_key(client_address) : std::string{known_key}),
    std::string{client_address},
    {},
    {}};
  if (req.header("authorization").empty())
    return by_address;
  auto presented = bearer_token(req);
  if (presented.empty()) {
    by_address.who.k = caller::kind::malformed;
    return by_address;
  }
  // The token itself never leaves this function but in `session_token`; only a hash prefix of
  // it is logged.
  auto token = signed_token(presented, token_key);
  auto hash = core::sha256_hex(token ? *token : presented);
  bool admin = !token && core::constant_time_equal(hash, admin_key_hash);
  by_address.who.k = admin ? caller::kind::admin : caller::kind::unknown;
  if (c == route_class::login || c == route_class::signup)
    return by_address;
  if (admin)
    return {std::string{admin_bucket}, "admin", {}, by_address.who};
  by_address.shown += " unverified-token:" + hash.substr(0, 12);
  if (token)
    by_address.session_token = std::string{*token};
  return by_address;
}

bool is_feed_path(std::string_view path) {
  constexpr std::string_view events = "/events";
  return path == "/ws"
         || (path.size() > events.size() && path.substr(path.size() - events.size()) == events);
}

peer_info peer_of(std::string_view peer, const std::vector<config::cidr_block>& trusted) {
  peer_info out;
  auto ip = config::parse_ip(peer);
  out.address = ip ? ip->text() : std::string{peer};
  out.trusted = ip && trusted_address(*ip, trusted);
  out.key = address_key(out.address);
  return out;
}

admission admit(request& req, const peer_info& peer, const std::vector<config::cidr_block>& trusted,
                std::string_view token_key, std::string_view admin_key_hash) {
  admission out;
  out.target_ok = parse_target(req.target, req.path, req.query);
  std::string_view path = out.target_ok ? std::string_view{req.path} : "";
  // Only a trusted proxy's requests name another client.
  auto address = peer.trusted ? client_address(peer.address, forwarded_for(req), trusted)
                              : peer.address;
  req.client = address;
  if (out.target_ok && req.header("authorization").empty() && is_feed_path(req.path))
    if (const auto* token = req.query_one("access_token"))
      req.headers.emplace("authorization", "Bearer " + *token);
  const auto* spec = route_of(req.method, path); // once: the probe test and the class
  if (is_probe(req.method, spec)) {
    out.probe = true;
    out.identity.shown = std::move(address);
    return out;
  }
  out.cls = class_of(spec, req.method);
  out.identity = identify(req, out.cls, token_key, admin_key_hash, address,
                          address == peer.address ? std::string_view{peer.key} : "");
  req.who = out.identity.who;
  return out;
}

admission admit(request& req, std::string_view peer, const std::vector<config::cidr_block>& trusted,
                std::string_view token_key, std::string_view admin_key_hash) {
  return admit(req, peer_of(peer, trusted), trusted, token_key, admin_key_hash);
}

std::string bucket_of(const caller& who, std::string_view address_key) {
  switch (who.k) {
    case caller::kind::customer: return customer_identity(who.customer_id).bucket;
    case caller::kind::admin: return std::string{admin_bucket};
    default: return address_bucket(address_key);
  }
}

client_identity customer_identity(std::string_view customer_id) {
  return {"c:" + std::string{customer_id},
          "customer:" + std::string{customer_id},
          {},
          {caller::kind::customer, std::string{customer_id}}};
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
