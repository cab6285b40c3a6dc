#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>
#include <atomic>
#include <chrono>
#include <cstdlib>

namespace emporium::test {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string{v} : fallback;
}

std::string pg_url() {
  auto v = env_or("EMPORIUM_TEST_PG_URL", "");
  if (v.empty())
    FAIL("EMPORIUM_TEST_PG_URL is not set: run the suite through scripts/test.sh");
  return v;
}

std::string redis_url() {
  auto v = env_or("EMPORIUM_TEST_REDIS_URL", "");
  if (v.empty())
    FAIL("EMPORIUM_TEST_REDIS_URL is not set: run the suite through scripts/test.sh");
  return v;
}

config::settings test_settings() {
  config::settings s;
  s.postgres.url = pg_url();
  s.redis.url = redis_url();
  s.postgres.pool_size = 2;
  s.postgres.statement_timeout_ms = 5'000;
  s.http.request_timeout_ms = 5'000;
  return s;
}

std::string unique(const std::string& prefix) {
  static std::atomic<int> counter{0};
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(now % 1'000'000'007) + "-"
         + std::to_string(counter.fetch_add(1));
}

} // namespace emporium::test
