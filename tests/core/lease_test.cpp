#include "core/lease.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <vector>

using emporium::core::lease_clock;
using emporium::core::lease_end;
using namespace std::chrono_literals;

TEST_CASE("a node's lease runs from the send time of the heartbeats a majority acknowledged",
          "[lease]") {
  const auto t0 = lease_clock::now();
  const auto term = 1500ms;
  SECTION("a single node's never ends") {
    CHECK(lease_end({}, 1, term) == lease_clock::time_point::max());
  }
  SECTION("three members: the latest acknowledgement of one peer is enough") {
    CHECK(lease_end({t0 - 200ms, t0 - 900ms}, 2, term) == t0 - 200ms + term);
  }
  SECTION("five members: the second latest of the peers' counts") {
    CHECK(lease_end({t0 - 900ms, t0 - 100ms, t0 - 400ms, t0 - 3s}, 3, term) == t0 - 400ms + term);
  }
  SECTION("too few live peers: no lease") {
    CHECK(lease_end({t0}, 3, term) == lease_clock::time_point::min());
    CHECK(lease_end({}, 2, term) == lease_clock::time_point::min());
  }
  SECTION("a peer never heard from yet counts as acknowledging nothing") {
    CHECK(lease_end({lease_clock::time_point{}, t0}, 3, term) < t0);
  }
  SECTION("after a freeze of 6 s, acknowledgements handled at the thaw extend nothing") {
    // What the node sent before the freeze was acknowledged meanwhile; the answers waited in its
    // mailbox. However many are handled now, the lease ended 1.5 s after the last was sent.
    const auto frozen_at = t0 - 6s;
    std::vector<lease_clock::time_point> acked{frozen_at - 10ms, frozen_at - 500ms};
    CHECK(lease_end(acked, 2, term) < t0);
    CHECK(lease_end(acked, 2, term) == frozen_at - 10ms + term);
  }
}
