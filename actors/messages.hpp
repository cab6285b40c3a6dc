#pragma once
/// The messages to entities, one named struct per request, in one place: each entity's interface
/// (interfaces.hpp) lists its messages and their replies, and a manager routes every one of them
/// on its `id`, the key of the entity it is for. Every member is a value with an `inspect`
/// overload, so a message can be serialized and sent to another node as it is.
///
/// Adding a message: its struct and `inspect` below, its `CAF_ADD_TYPE_ID` line at the end of
/// this file, and its `replies_to` (or `reacts_to`) line in the entity's interface; the entity
/// handles it, and a caller sends it with `ask` (runtime) or `request` (another entity).
///
/// This file is part of the type-ID block: types.hpp includes it between
/// CAF_BEGIN_TYPE_ID_BLOCK and CAF_END_TYPE_ID_BLOCK; include types.hpp, never this file.

#ifndef EMPORIUM_INSIDE_TYPE_ID_BLOCK
#error "include actors/types.hpp, which includes actors/messages.hpp inside the type-ID block"
#endif

#include "core/commerce_model.hpp"
#include "core/model.hpp"

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace emporium::actors {

// -- product ----------------------------------------------------------------------------------

struct product_read {
  std::string id;
};

struct product_create {
  std::string id;
  model::product_draft draft;
};

/// Applies `patch` if the product is still at `expected_version` (0: any version).
struct product_update {
  std::string id;
  model::product_patch patch;
  std::int64_t expected_version = 0;
};

/// A forced failure, for tests of supervision.
struct product_crash {
  std::string id;
};

/// Holds `quantity` for order `order_id` (all or nothing), answering the line's terms.
struct product_reserve {
  std::string id;
  std::string order_id;
  std::int64_t quantity = 0;
};

/// Gives back what order `order_id` held.
struct product_release {
  std::string id;
  std::string order_id;
};

/// A committed stock change (stock, version) made by order `order_id` ("" for none).
struct product_stock {
  std::string id;
  std::string order_id;
  std::int64_t stock = 0;
  std::int64_t version = 0;
};

// -- customer ---------------------------------------------------------------------------------

struct customer_read {
  std::string id;
  model::principal who;
};

/// Places an order of the customer `id` (one at a time per customer).
struct customer_place {
  std::string id;
  model::order_request req;
};

/// Committed loyalty points (points, version).
struct customer_points {
  std::string id;
  std::int64_t points = 0;
  std::int64_t version = 0;
};

// -- cart -------------------------------------------------------------------------------------

/// Makes the cart `id` (an id chosen for it just now) for customer `who`; answers it, empty.
/// Safe twice: run again, it answers the cart its first run made.
struct cart_create {
  std::string id;
  model::principal who;
};

/// The cart priced for shipping to `country`.
struct cart_read {
  std::string id;
  model::principal who;
  std::string country;
};

/// Sets the quantity of a product in the cart (0 removes it); answers the cart priced for
/// shipping to `country`.
struct cart_set_item {
  std::string id;
  model::principal who;
  std::string product_id;
  std::int64_t quantity = 0;
  std::string country;
};

struct cart_checkout {
  std::string id;
  model::principal who;
  model::order_request req;
};

// -- order ------------------------------------------------------------------------------------

/// Places the order `id` (the reservation saga).
struct order_create {
  std::string id;
  model::order_request req;
};

struct order_read {
  std::string id;
  model::principal who;
};

struct order_pay {
  std::string id;
  model::principal who;
  std::string payment_method;
};

struct order_cancel {
  std::string id;
  model::principal who;
};

struct order_ship {
  std::string id;
  model::principal who;
};

struct order_deliver {
  std::string id;
  model::principal who;
};

/// The payment timeout passed: cancel if still unpaid (or settle a payment left paying).
struct order_expire {
  std::string id;
};

/// Messages that bring their entity into being under an id chosen for it just now: nothing is
/// stored under that id before such a message has run, and when it runs again (a retried job,
/// a redelivered message) its handler answers what its first run stored. The manager that
/// activates an entity for one of them (on the node that owns the key, at that moment) starts it
/// `fresh`: without reading its state first.
template <class Msg>
struct creates_entity : std::false_type {};
template <>
struct creates_entity<cart_create> : std::true_type {};
template <>
struct creates_entity<order_create> : std::true_type {};

/// Reads change nothing: when the node they were forwarded to dies before answering, they are
/// sent again to the key's new owner. Every other message may have taken effect, so its caller
/// gets 503 instead (and retries with its Idempotency-Key).
template <class Msg>
struct is_read_message : std::false_type {};
template <>
struct is_read_message<product_read> : std::true_type {};
template <>
struct is_read_message<customer_read> : std::true_type {};
template <>
struct is_read_message<cart_read> : std::true_type {};
template <>
struct is_read_message<order_read> : std::true_type {};

// -- cluster (cluster.cpp) --------------------------------------------------------------------

/// A node introduces itself to a peer (the dialer first; the answer is the peer's own).
struct node_hello {
  std::string node;                 ///< its name, host:node_port
  caf::actor membership;            ///< its membership actor (heartbeats go there)
  std::vector<caf::actor> managers; ///< its managers: product, customer, cart, order
  bool serving = false;             ///< it holds the majority's lease
};

/// Sent every cluster.heartbeat_ms to each live peer: the lease of the majority, whether the
/// sender serves (only serving members own keys), and the members it sees up (a node that does
/// not see one of them yet dials it at once).
struct node_heartbeat {
  std::string node;
  bool serving = false;
  std::vector<std::string> up;
};

/// To a local link: its peer is up, with these managers (as in node_hello).
struct link_up {
  std::string node;
  std::vector<caf::actor> managers;
};

// -- inspect overloads --------------------------------------------------------------------------

#define EMPORIUM_MESSAGE_INSPECT(type, ...)                        \
  template <class Inspector>                                       \
  typename Inspector::result_type inspect(Inspector& f, type& x) { \
    return f(caf::meta::type_name(#type), __VA_ARGS__);            \
  }

EMPORIUM_MESSAGE_INSPECT(product_read, x.id)
EMPORIUM_MESSAGE_INSPECT(product_create, x.id, x.draft)
EMPORIUM_MESSAGE_INSPECT(product_update, x.id, x.patch, x.expected_version)
EMPORIUM_MESSAGE_INSPECT(product_crash, x.id)
EMPORIUM_MESSAGE_INSPECT(product_reserve, x.id, x.order_id, x.quantity)
EMPORIUM_MESSAGE_INSPECT(product_release, x.id, x.order_id)
EMPORIUM_MESSAGE_INSPECT(product_stock, x.id, x.order_id, x.stock, x.version)
EMPORIUM_MESSAGE_INSPECT(customer_read, x.id, x.who)
EMPORIUM_MESSAGE_INSPECT(customer_place, x.id, x.req)
EMPORIUM_MESSAGE_INSPECT(customer_points, x.id, x.points, x.version)
EMPORIUM_MESSAGE_INSPECT(cart_create, x.id, x.who)
EMPORIUM_MESSAGE_INSPECT(cart_read, x.id, x.who, x.country)
EMPORIUM_MESSAGE_INSPECT(cart_set_item, x.id, x.who, x.product_id, x.quantity, x.country)
EMPORIUM_MESSAGE_INSPECT(cart_checkout, x.id, x.who, x.req)
EMPORIUM_MESSAGE_INSPECT(order_create, x.id, x.req)
EMPORIUM_MESSAGE_INSPECT(order_read, x.id, x.who)
EMPORIUM_MESSAGE_INSPECT(order_pay, x.id, x.who, x.payment_method)
EMPORIUM_MESSAGE_INSPECT(order_cancel, x.id, x.who)
EMPORIUM_MESSAGE_INSPECT(order_ship, x.id, x.who)
EMPORIUM_MESSAGE_INSPECT(order_deliver, x.id, x.who)
EMPORIUM_MESSAGE_INSPECT(order_expire, x.id)
EMPORIUM_MESSAGE_INSPECT(node_hello, x.node, x.membership, x.managers, x.serving)
EMPORIUM_MESSAGE_INSPECT(node_heartbeat, x.node, x.serving, x.up)
EMPORIUM_MESSAGE_INSPECT(link_up, x.node, x.managers)

#undef EMPORIUM_MESSAGE_INSPECT

} // namespace emporium::actors

// -- type IDs (continuing the block opened in types.hpp) ---------------------------------------

CAF_ADD_TYPE_ID(emporium, (emporium::actors::product_read))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::product_create))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::product_update))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::product_crash))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::product_reserve))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::product_release))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::product_stock))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::customer_read))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::customer_place))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::customer_points))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::cart_create))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::cart_read))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::cart_set_item))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::cart_checkout))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::order_create))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::order_read))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::order_pay))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::order_cancel))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::order_ship))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::order_deliver))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::order_expire))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::node_hello))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::node_heartbeat))
CAF_ADD_TYPE_ID(emporium, (emporium::actors::link_up))
