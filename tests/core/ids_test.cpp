#include "core/ids.hpp"
#include "persistence/pg.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <set>
#include <thread>

using namespace emporium::core;

TEST_CASE("ids carry their prefix, are well formed and strictly increasing") {
  std::string last;
  std::set<std::string> seen;
  for (int i = 0; i < 20000; ++i) {
    auto id = new_id("prod");
    REQUIRE(id.size() == 5 + 26);
    REQUIRE(is_valid_id(id, "prod"));
    REQUIRE(id > last);
    REQUIRE(seen.insert(id).second);
    last = id;
  }
}

TEST_CASE("ids are unique across threads") {
  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& out : per_thread)
    threads.emplace_back([&out] {
      for (int i = 0; i < 5000; ++i)
        out.push_back(new_id("ord"));
    });
  for (auto& t : threads)
    t.join();
  std::set<std::string> all;
  for (auto& v : per_thread)
    all.insert(v.begin(), v.end());
  CHECK(all.size() == 20000);
}

TEST_CASE("is_valid_id rejects wrong prefixes and bodies") {
  auto id = new_id("prod");
  CHECK_FALSE(is_valid_id(id, "cart"));
  CHECK_FALSE(is_valid_id("prod_", "prod"));
  CHECK_FALSE(is_valid_id(id.substr(0, id.size() - 1), "prod"));
  CHECK_FALSE(is_valid_id(id + "0", "prod"));
  auto lower = id;
  lower.back() = 'a';
  CHECK_FALSE(is_valid_id(lower, "prod"));
  auto with_u = id;
  with_u.back() = 'U'; // not in Crockford's alphabet
  CHECK_FALSE(is_valid_id(with_u, "prod"));
  auto overflow = id;
  overflow[5] = '8'; // the first digit holds 3 bits
  CHECK_FALSE(is_valid_id(overflow, "prod"));
  CHECK_FALSE(is_valid_id("prod-01M87J4R1W9HXFJMV5AF0KNPTJ", "prod"));
}

TEST_CASE("random_hex, sha256_hex and constant_time_equal") {
  auto a = random_hex(32);
  auto b = random_hex(32);
  CHECK(a.size() == 64);
  CHECK(a != b);
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(constant_time_equal("same", "same"));
  CHECK_FALSE(constant_time_equal("same", "sane"));
  CHECK_FALSE(constant_time_equal("same", "same!"));
}

TEST_CASE("hmac_sha256_hex: RFC 4231 test cases 2 and 6 (a key longer than a block)") {
  CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?")
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(hmac_sha256_hex(std::string(131, '\xaa'),
                        "Test Using Larger Than Block-Size Key - Hash Key First")
        == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_CASE("sign and verify: 32 hex digits of HMAC-SHA-256, checked whole") {
  // The first 32 hex digits of RFC 4231 test case 2.
  CHECK(sign("Jefe", "what do ya want for nothing?") == "5bdcc146bf60754e6a042426089575c7");
  auto signature = sign("key", "message");
  CHECK(verify("key", "message", signature));
  CHECK_FALSE(verify("key", "message!", signature));
  CHECK_FALSE(verify("another key", "message", signature));
  CHECK_FALSE(verify("key", "message", signature.substr(0, 31)));
  CHECK_FALSE(verify("key", "message", signature + "0"));
  CHECK_FALSE(verify("key", "message", hmac_sha256_hex("key", "message")));
  CHECK_FALSE(verify("key", "message", ""));
}

TEST_CASE("base64url: RFC 4648 vectors in the URL-safe alphabet without padding") {
  CHECK(base64url_encode("") == "");
  CHECK(base64url_encode("f") == "Zg");
  CHECK(base64url_encode("fo") == "Zm8");
  CHECK(base64url_encode("foo") == "Zm9v");
  CHECK(base64url_encode("foobar") == "Zm9vYmFy");
  CHECK(base64url_encode("\xfb\xff\xbf") == "-_-_");
  std::string all;
  for (int i = 0; i < 256; ++i) {
    auto back = base64url_decode(base64url_encode(all));
    REQUIRE(back);
    CHECK(*back == all);
    all.push_back(static_cast<char>(i));
  }
  CHECK(base64url_decode("Zm9vYmFy") == std::optional<std::string>{"foobar"});
  CHECK(base64url_decode("-_-_") == std::optional<std::string>{"\xfb\xff\xbf"});
  CHECK(base64url_decode("") == std::optional<std::string>{""});
}

TEST_CASE("base64url: only what the encoder can produce decodes") {
  CHECK_FALSE(base64url_decode("Zm8="));      // padding
  CHECK_FALSE(base64url_decode("+/+/"));      // the standard alphabet
  CHECK_FALSE(base64url_decode("Zm9vY"));     // a length no encoding has
  CHECK_FALSE(base64url_decode("Zm9"));       // unused bits set ("Zm8" is "fo")
  CHECK_FALSE(base64url_decode("Zm9v YmFy")); // a blank
  CHECK_FALSE(base64url_decode("not base64!"));
}

TEST_CASE("format_rfc3339 renders UTC with milliseconds") {
  CHECK(emporium::persistence::format_rfc3339(0) == "1970-01-01T00:00:00.000Z");
  CHECK(emporium::persistence::format_rfc3339(1795550240829) == "2026-11-24T19:57:20.829Z");
  CHECK(emporium::persistence::format_rfc3339(-1) == "1969-12-31T23:59:59.999Z");
}
