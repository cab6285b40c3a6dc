#include "core/ring.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

using emporium::core::ring;

namespace {

std::vector<std::string> keys(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back("01J" + std::to_string(1'000'000 + i * 7919));
  return out;
}

} // namespace

TEST_CASE("the ring's owner does not depend on the order the members are listed in", "[ring]") {
  ring a{{"10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"}};
  ring b{{"10.0.0.3:7001", "10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.1:7001"}};
  CHECK(b.members().size() == 3);
  for (const auto& k : keys(2000))
    CHECK(a.owner(k) == b.owner(k));
}

TEST_CASE("the ring's owners are fixed values, the same in every build and process", "[ring]") {
  // xxHash64 is specified; std::hash is not (and differs between libraries). These are the
  // owners any node of any build must compute.
  CHECK(emporium::core::xxhash64("") == 0xEF46DB3751D8E999ull);
  CHECK(emporium::core::xxhash64("abc") == 0x44BC2CF5AD770999ull);
  ring r{{"a:1", "b:1", "c:1"}};
  std::map<std::string, int> count;
  for (const auto& k : keys(3000))
    ++count[r.owner(k)];
  // Spread evenly (each ~1000 of 3000).
  for (const auto& [m, n] : count) {
    INFO(m);
    CHECK(n > 850);
    CHECK(n < 1150);
  }
}

TEST_CASE("a member leaving moves only its keys, and its return moves exactly those back",
          "[ring]") {
  ring three{{"a:1", "b:1", "c:1"}};
  ring two{{"a:1", "c:1"}};
  int moved = 0;
  for (const auto& k : keys(3000)) {
    const auto& before = three.owner(k);
    const auto& after = two.owner(k);
    if (before == "b:1") {
      ++moved;
      CHECK(after != "b:1");
    } else {
      CHECK(after == before);
    }
  }
  CHECK(moved > 850);
  CHECK(ring{}.owner("x").empty());
  CHECK(ring{{"only:1"}}.owner("x") == "only:1");
  CHECK(three.contains("b:1"));
  CHECK_FALSE(two.contains("b:1"));
}
