#pragma once
/// RFC 9457 problem details: the one place where a domain failure becomes an HTTP status.

#include "core/model.hpp"
#include "http/message.hpp"

namespace emporium::http {

/// The HTTP status of a domain error code.
int status_of(errc code);

/// A problem+json response for `f`.
response problem(const failure& f);

/// A problem+json response with an explicit status (for errors found by HTTP itself).
response problem(int status, std::string detail, std::vector<field_error> errors = {});

} // namespace emporium::http
