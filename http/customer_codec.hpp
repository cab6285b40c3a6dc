#pragma once
/// JSON of customers and sessions, and validation of sign-ups and logins. Like json_codec:
/// every problem named by field, nothing invalid passes.

#include "config/settings.hpp"
#include "core/commerce_model.hpp"

#include <string>

namespace emporium::http::codec {

/// POST /customers: email, name, password (8..128 characters).
result<model::customer_draft> decode_customer_draft(const std::string& body);

struct login_request {
  std::string email;
  std::string password;
};

/// POST /sessions: email and password.
result<login_request> decode_login(const std::string& body);

std::string encode(const model::customer& c, const config::loyalty_settings& tiers);
std::string encode(const model::session_grant& g);

} // namespace emporium::http::codec
