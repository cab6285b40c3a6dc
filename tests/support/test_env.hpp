#pragma once
/// What the integration and end-to-end tests need from their environment: the throwaway
/// PostgreSQL and Redis that scripts/test.sh started.

#include "config/settings.hpp"

#include <string>

namespace emporium::test {

/// EMPORIUM_TEST_PG_URL; fails the current test with a clear message when unset.
std::string pg_url();

/// EMPORIUM_TEST_REDIS_URL; likewise.
std::string redis_url();

/// An environment variable, or `fallback`.
std::string env_or(const char* name, const std::string& fallback);

/// Settings pointing at the test services, with short timeouts suited to tests.
config::settings test_settings();

/// A string unique to this process and call, for SKUs and emails that must not collide.
std::string unique(const std::string& prefix);

} // namespace emporium::test
