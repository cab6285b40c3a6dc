// Prints the OpenAPI document served at GET /openapi.json, for the validator test
// (tests/http/validate_openapi.mjs) and for anyone who wants it as a file.

#include "http/openapi.hpp"

#include <iostream>

int main() {
  std::cout << emporium::http::openapi::document() << "\n";
  return std::cout.good() ? 0 : 1;
}
