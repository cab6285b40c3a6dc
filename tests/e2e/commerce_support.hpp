#pragma once
/// Request bodies and answer checks the commerce end-to-end tests share (orders, carts, limits).

#include "e2e/http_client.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace emporium::test {

/// The admin's Authorization header.
header_map admin();

/// `h` with one more header.
header_map with(header_map h, const std::string& name, const std::string& value);

/// "status body", for failure messages.
std::string show(const http_response& r);

/// A shipping address any zone of the default rate table serves (in `country`).
nlohmann::json address(const std::string& country = "US");

/// An order of `lines` (product id, quantity) shipped to `address(country)`.
nlohmann::json order_body(const std::vector<std::pair<std::string, int>>& lines,
                          const std::string& country = "US");

/// A problem+json answer with `status`, `title` and `detail`; its body.
nlohmann::json check_problem(const http_response& r, int status);

/// Whether the problem's errors[] names `field`.
bool names_field(const nlohmann::json& problem, const std::string& field);

} // namespace emporium::test
