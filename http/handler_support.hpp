#pragma once
/// What every handler uses: JSON answers, the media-type check.

#include "core/model.hpp"
#include "http/message.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace emporium::http {

/// A JSON answer.
response json_response(int status, std::string body);

/// The token of an `Authorization: Bearer <token>` header, or empty.
std::string_view bearer_token(const request& req);

/// The runtime's callback for a handler: it only hands the result over, as a value; `make`
/// turns it into the answer on the connection's strand (encoding never runs on an actor's
/// thread). `make` takes `result<T>&` and returns a response.
template <class T, class Make>
auto on_strand(responder respond, Make make) {
  return [respond = std::move(respond), make = std::move(make)](result<T> r) {
    respond.later([r = std::move(r), make]() mutable -> response { return make(r); });
  };
}

/// Write bodies must be JSON; a missing Content-Type is tolerated, another one is not (415).
std::optional<response> require_json(const request& req);

} // namespace emporium::http
