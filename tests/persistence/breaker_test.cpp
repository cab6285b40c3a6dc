// The circuit breaker's transitions (persistence/breaker.*), without a database: closed → open
// after `threshold` consecutive failures, open fails fast, half-open after the open period lets
// exactly one probe through, the probe's success closes it and its failure opens it again.
// The breaker reads steady_clock itself (no clock to inject): the open period here is short and
// the tests only wait past it, never measure it.

#include "persistence/breaker.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

namespace {

using emporium::persistence::circuit_breaker;
using state = circuit_breaker::state;
using namespace std::chrono_literals;

constexpr auto open_for = 50ms;

/// Waits until the open period is over (allow() would then start the probe).
void wait_out_open_period() {
  std::this_thread::sleep_for(open_for + 30ms);
}

/// A breaker opened by `threshold` failures.
void open(circuit_breaker& b, int threshold) {
  for (int i = 0; i < threshold; ++i) {
    REQUIRE(b.allow());
    b.on_failure();
  }
  REQUIRE(b.current() == state::open);
}

} // namespace

TEST_CASE(
  "breaker: closed until the threshold of consecutive failures, then open and failing "
  "fast",
  "[breaker]") {
  circuit_breaker b{"db", 3, 10'000ms};
  CHECK(b.current() == state::closed);
  CHECK(b.times_opened() == 0);
  for (int i = 0; i < 2; ++i) {
    REQUIRE(b.allow());
    b.on_failure();
    CHECK(b.current() == state::closed);
  }
  // A success between failures starts the count again: two more failures do not open it.
  b.on_success();
  for (int i = 0; i < 2; ++i) {
    REQUIRE(b.allow());
    b.on_failure();
  }
  CHECK(b.current() == state::closed);
  REQUIRE(b.allow());
  b.on_failure();
  CHECK(b.current() == state::open);
  CHECK(b.times_opened() == 1);
  // Open for 10 s: every caller is refused at once.
  for (int i = 0; i < 100; ++i)
    CHECK_FALSE(b.allow());
  CHECK(b.current() == state::open);
  CHECK(std::string{emporium::persistence::to_string(b.current())} == "open");
}

TEST_CASE(
  "breaker: after the open period exactly one probe goes ahead, and its success closes "
  "the circuit",
  "[breaker]") {
  circuit_breaker b{"db", 2, open_for};
  open(b, 2);
  CHECK_FALSE(b.allow());
  wait_out_open_period();
  REQUIRE(b.allow()); // the probe
  CHECK(b.current() == state::half_open);
  // While the probe is out, nobody else goes ahead.
  for (int i = 0; i < 10; ++i)
    CHECK_FALSE(b.allow());
  b.on_success();
  CHECK(b.current() == state::closed);
  for (int i = 0; i < 10; ++i)
    CHECK(b.allow());
  // Closed again with a fresh count: one failure below the threshold keeps it closed.
  b.on_failure();
  CHECK(b.current() == state::closed);
  CHECK(b.times_opened() == 1);
}

TEST_CASE("breaker: a failed probe opens the circuit again at once, for another whole period",
          "[breaker]") {
  circuit_breaker b{"db", 5, open_for};
  open(b, 5);
  wait_out_open_period();
  REQUIRE(b.allow());
  REQUIRE(b.current() == state::half_open);
  b.on_failure(); // one failure suffices in half-open, whatever the threshold
  CHECK(b.current() == state::open);
  CHECK(b.times_opened() == 2);
  CHECK_FALSE(b.allow());
  // The next period ends like the first: one probe, then closed on success.
  wait_out_open_period();
  REQUIRE(b.allow());
  CHECK_FALSE(b.allow());
  b.on_success();
  CHECK(b.current() == state::closed);
}

TEST_CASE("breaker: a threshold below one counts as one", "[breaker]") {
  circuit_breaker b{"db", 0, 10'000ms};
  REQUIRE(b.allow());
  b.on_failure();
  CHECK(b.current() == state::open);
  CHECK_FALSE(b.allow());
}
