#pragma once
/// What one blocking worker owns: a PostgreSQL session and a Redis client. Never shared between
/// threads.

#include "config/settings.hpp"
#include "persistence/cache.hpp"
#include "persistence/pg.hpp"

namespace emporium::persistence {

struct backend {
  explicit backend(const config::settings& s)
    : pg(
      pg_options{s.postgres.url, s.postgres.connect_timeout_ms, s.postgres.statement_timeout_ms}),
      cache(redis_options{s.redis.url, s.redis.timeout_ms, s.redis.breaker_threshold,
                          s.redis.breaker_open_ms}),
      cache_ttl_s(s.redis.ttl_s) {}

  pg_session pg;
  redis_cache cache;
  int cache_ttl_s;
};

} // namespace emporium::persistence
