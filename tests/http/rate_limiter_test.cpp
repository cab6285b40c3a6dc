// The token bucket and the local bucket store, on a clock the test drives.

#include "http/rate_limiter.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace emporium::http;

TEST_CASE("a full bucket admits exactly its capacity, then refuses with Retry-After", "[rate]") {
  const bucket_params p{5, 0.5}; // 5 tokens, one every 2 s
  bucket_state b{p.capacity, 100.0};
  for (int i = 0; i < 5; ++i) {
    auto d = take_token(b, p, 100.0);
    INFO("request " << i);
    CHECK(d.allowed);
    CHECK(d.limit == 5);
    CHECK(d.remaining == 4 - i);
  }
  auto refused = take_token(b, p, 100.0);
  CHECK_FALSE(refused.allowed);
  CHECK(refused.remaining == 0);
  CHECK(refused.retry_after_s == 2); // one token takes 2 s
  CHECK(refused.reset_s == 10);      // five tokens take 10 s
  // Refusals do not spend anything: still refused a moment later, with less to wait.
  auto later = take_token(b, p, 101.0);
  CHECK_FALSE(later.allowed);
  CHECK(later.retry_after_s == 1);
}

TEST_CASE("tokens come back at the configured rate, never beyond capacity", "[rate]") {
  const bucket_params p{3, 2}; // 2 tokens a second
  bucket_state b{p.capacity, 0.0};
  for (int i = 0; i < 3; ++i)
    REQUIRE(take_token(b, p, 0.0).allowed);
  REQUIRE_FALSE(take_token(b, p, 0.0).allowed);
  CHECK_FALSE(take_token(b, p, 0.49).allowed); // 0.98 tokens
  auto d = take_token(b, p, 0.5);              // 1 token exactly
  CHECK(d.allowed);
  CHECK(d.remaining == 0);
  // A long pause fills the bucket to capacity and no more.
  d = take_token(b, p, 1000.0);
  CHECK(d.allowed);
  CHECK(d.remaining == 2);
  CHECK(d.reset_s == 1); // one token short of full: 0.5 s, rounded up
  // A clock going backwards (another thread's earlier reading) takes nothing and gives nothing.
  d = take_token(b, p, 999.0);
  CHECK(d.allowed);
  CHECK(d.remaining == 1);
}

TEST_CASE("fractional rates: a strict login bucket", "[rate]") {
  const bucket_params p{2, 0.2}; // one attempt every 5 s
  bucket_state b{p.capacity, 0.0};
  CHECK(take_token(b, p, 0.0).allowed);
  CHECK(take_token(b, p, 0.0).allowed);
  auto d = take_token(b, p, 0.0);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after_s == 5);
  CHECK(d.reset_s == 10);
  CHECK_FALSE(take_token(b, p, 4.9).allowed);
  CHECK(take_token(b, p, 5.0).allowed);
}

TEST_CASE("make_decision turns Redis's tokens into header values", "[rate]") {
  const bucket_params p{10, 1};
  auto d = make_decision(true, 6.7, p);
  CHECK(d.allowed);
  CHECK(d.limit == 10);
  CHECK(d.remaining == 6);
  CHECK(d.reset_s == 4); // 3.3 s to full
  d = make_decision(false, 0.25, p);
  CHECK_FALSE(d.allowed);
  CHECK(d.remaining == 0);
  CHECK(d.retry_after_s == 1); // 0.75 s, rounded up
  // Out-of-range input from the store is clamped, not trusted.
  d = make_decision(true, 50, p);
  CHECK(d.remaining == 10);
  CHECK(d.reset_s == 0);
  d = make_decision(false, -3, p);
  CHECK(d.remaining == 0);
  CHECK(d.retry_after_s == 1);
}

TEST_CASE("local buckets: one per key, independent", "[rate]") {
  local_buckets store{1000};
  const bucket_params p{2, 0.001};
  CHECK(store.take("read:a:10.0.0.1", p, 0).allowed);
  CHECK(store.take("read:a:10.0.0.1", p, 0).allowed);
  CHECK_FALSE(store.take("read:a:10.0.0.1", p, 0).allowed);
  // Another client, and the same client's other class, have their own buckets.
  CHECK(store.take("read:a:10.0.0.2", p, 0).allowed);
  CHECK(store.take("write:a:10.0.0.1", p, 0).allowed);
  CHECK(store.size() == 3);
}

TEST_CASE(
  "local buckets stay within max_buckets under a flood of distinct clients, dropping the "
  "least recently used",
  "[rate]") {
  local_buckets store{64}; // 16 shards of 4
  const bucket_params p{1, 0.001};
  // A client that keeps coming back is never the least recently used one.
  REQUIRE(store.take("read:a:regular", p, 0).allowed);
  for (int i = 0; i < 100'000; ++i) {
    store.take("read:a:flood-" + std::to_string(i), p, 0);
    if (i % 3 == 0)
      CHECK_FALSE(store.take("read:a:regular", p, 0).allowed); // still the drained bucket
    REQUIRE(store.size() <= 64);
  }
  CHECK(store.size() <= 64);
  CHECK(store.size() >= 16);
}

TEST_CASE("the limiter applies per-class overrides and the strict login defaults", "[rate]") {
  emporium::config::rate_limit_settings rl;
  rl.capacity = 7;
  rl.refill_per_s = 3;
  rl.write_capacity = 2;
  emporium::config::redis_settings redis;
  rate_limiter limiter{rl, redis};
  CHECK(limiter.params(route_class::read).capacity == 7);
  CHECK(limiter.params(route_class::read).refill_per_s == 3);
  CHECK(limiter.params(route_class::write).capacity == 2);
  CHECK(limiter.params(route_class::write).refill_per_s == 3);
  CHECK(limiter.params(route_class::login).capacity == 10);
  CHECK(limiter.params(route_class::login).refill_per_s == 0.2);
  CHECK_FALSE(limiter.redis_mode());
  // Local mode decides at once.
  auto d = limiter.try_now(route_class::write, "write:a:1.2.3.4");
  REQUIRE(d);
  CHECK(d->allowed);
  CHECK(d->limit == 2);
  CHECK(d->remaining == 1);
}
