// The entity messages (actors/messages.hpp) as they will cross nodes: each one registered in the
// type-ID block survives CAF's binary serialization with every member.

#include "actors/interfaces.hpp"

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <catch2/catch.hpp>

using namespace emporium;
using namespace emporium::actors;

namespace {

struct system_with_types : caf::actor_system_config {
  system_with_types() { register_types(*this); }
};

/// `x` in a message, serialized and read back by a second actor system (another node).
template <class T>
caf::message round_trip(const T& x) {
  system_with_types cfg_a;
  caf::actor_system a{cfg_a};
  std::vector<char> buf;
  caf::binary_serializer sink{a, buf};
  auto msg = caf::make_message(x);
  if (auto err = sink(msg))
    FAIL("serialization failed: " << a.render(err));
  system_with_types cfg_b;
  caf::actor_system b{cfg_b};
  caf::binary_deserializer source{b, buf};
  caf::message out;
  if (auto err = source(out))
    FAIL("deserialization failed: " << b.render(err));
  return out;
}

} // namespace

TEST_CASE("messages: an entity message keeps its key and members across serialization",
          "[actors][messages]") {
  cart_set_item in{"cart_1", model::principal{false, "cust_1"}, "prod_2", 3, "DE"};
  auto out = round_trip(in);
  REQUIRE(out.match_elements<cart_set_item>());
  const auto& x = out.get_as<cart_set_item>(0);
  CHECK(x.id == "cart_1");
  CHECK_FALSE(x.who.admin);
  CHECK(x.who.customer_id == "cust_1");
  CHECK(x.product_id == "prod_2");
  CHECK(x.quantity == 3);
  CHECK(x.country == "DE");
}

TEST_CASE("messages: nested model types and optionals survive serialization",
          "[actors][messages]") {
  model::order_request req;
  req.customer_id = "cust_1";
  req.items = {{"prod_1", 2}, {"prod_2", 1}};
  req.idempotency_key = "key-1";
  req.request_hash = "abc";
  auto out = round_trip(customer_place{"cust_1", req});
  REQUIRE(out.match_elements<customer_place>());
  const auto& x = out.get_as<customer_place>(0);
  CHECK(x.id == "cust_1");
  REQUIRE(x.req.items.size() == 2);
  CHECK(x.req.items[1].product_id == "prod_2");
  CHECK(x.req.idempotency_key == std::optional<std::string>{"key-1"});
  CHECK_FALSE(x.req.cart_id);
}
