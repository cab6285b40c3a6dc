#pragma once
/// What every handler uses: JSON answers, the admin check, the media-type check.

#include "http/message.hpp"
#include "http/routes.hpp"
#include "persistence/commerce_model.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace emporium::http {

/// A JSON answer.
response json_response(int status, std::string body);

/// The token of an `Authorization: Bearer <token>` header, or empty.
std::string_view bearer_token(const request& req);

/// Admin-only endpoints: 401 without credentials, 403 with wrong ones; nothing when allowed.
std::optional<response> require_admin(const app& a, const request& req);

/// Who is calling: the admin key → admin; a customer's token → that customer (looked up by the
/// runtime); no Authorization header → anonymous (an empty principal). A token that is neither
/// is answered 401 here and `then` is not called.
void identify(app& a, const request& req, std::function<void(model::principal)> then,
              const responder& respond);

/// Write bodies must be JSON; a missing Content-Type is tolerated, another one is not (415).
std::optional<response> require_json(const request& req);

} // namespace emporium::http
