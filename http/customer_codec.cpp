#include "http/customer_codec.hpp"

#include "actors/order_logic.hpp"
#include "http/json_reader.hpp"
#include "persistence/pg.hpp"

#include <algorithm>

namespace emporium::http::codec {

namespace {

bool plausible_email(const std::string& e) {
  auto at = e.find('@');
  if (at == std::string::npos || at == 0 || at != e.rfind('@') || e.size() > 254)
    return false;
  auto domain = e.substr(at + 1);
  auto dot = domain.find('.');
  if (domain.empty() || dot == std::string::npos || dot == 0 || domain.back() == '.')
    return false;
  return std::none_of(e.begin(), e.end(), [](unsigned char c) { return c <= ' ' || c == 0x7f; });
}

} // namespace

result<model::customer_draft> decode_customer_draft(const std::string& body) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"email", "name", "password"});
  model::customer_draft d;
  if (auto v = r.text("email", 3, 254, true)) {
    if (!plausible_email(*v))
      r.fail("email", "is not an email address");
    else
      d.email = *v;
  }
  if (auto v = r.text("name", 1, 200, true))
    d.name = *v;
  // Blank-only passwords are weak but valid: only the length is ruled here.
  auto* pw = r.find("password");
  if (!pw)
    r.fail("password", "is required");
  else if (!pw->is_string())
    r.fail("password", "must be a string");
  else {
    auto s = pw->get<std::string>();
    auto n = reader::utf8_length(s);
    if (n < 8 || n > 128)
      r.fail("password", "must be 8 to 128 characters long");
    else
      d.password = std::move(s);
  }
  if (!r.errors().empty())
    return failure{errc::invalid_input, "the customer is invalid", std::move(r.errors())};
  return d;
}

result<login_request> decode_login(const std::string& body) {
  failure f;
  auto j = parse_object(body, f);
  if (!j)
    return f;
  reader r{*j};
  r.reject_unknown({"email", "password"});
  login_request out;
  if (auto v = r.text("email", 1, 254, true))
    out.email = *v;
  auto* pw = r.find("password");
  if (!pw || !pw->is_string() || pw->get<std::string>().empty()
      || pw->get<std::string>().size() > 1024)
    r.fail("password", "is required (a string)");
  else
    out.password = pw->get<std::string>();
  if (!r.errors().empty())
    return failure{errc::invalid_input, "email and password are required", std::move(r.errors())};
  return out;
}

std::string encode(const model::customer& c, const config::loyalty_settings& tiers) {
  return dump_json(json{{"id", c.id},
                        {"email", c.email},
                        {"name", c.name},
                        {"loyalty",
                         {{"points", c.loyalty_points},
                          {"tier", actors::order_logic::loyalty_tier(c.loyalty_points, tiers)}}},
                        {"created_at", persistence::format_rfc3339(c.created_at_ms)}});
}

std::string encode(const model::session_grant& g) {
  return dump_json(json{{"token", g.token},
                        {"customer_id", g.customer_id},
                        {"expires_at", persistence::format_rfc3339(g.expires_at_ms)}});
}

} // namespace emporium::http::codec
