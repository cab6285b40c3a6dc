#pragma once
/// Every actor interface of Emporium, as typed_actor aliases, in one place. Messages to an entity
/// carry the entity's key first: a manager routes on it without knowing the message's type.
///
/// Every entity also takes `absent_atom` from itself: sent when its activation found nothing, it
/// arrives after the messages that were already waiting (a create among them), and an entity
/// still empty then asks its manager to passivate it (report_absent).

#include "actors/types.hpp"

#include <string>

namespace emporium::actors {

/// A product: its state lives in the actor while it is active.
using product_actor = caf::typed_actor<
  caf::replies_to<std::string, read_atom>::with<model::product>,
  caf::replies_to<std::string, create_atom, model::product_draft>::with<model::product>,
  /// patch with an expected version (0: any version), answers the new state
  caf::replies_to<std::string, patch_atom, model::product_patch, std::int64_t>::with<model::product>,
  /// a forced failure, for tests of supervision
  caf::replies_to<std::string, crash_atom>::with<bool>,
  /// holds `quantity` for order `order_id` (all or nothing), answering the line's terms
  caf::replies_to<std::string, reserve_atom, std::string, std::int64_t>::with<model::reservation>,
  /// gives back what order `order_id` held
  caf::reacts_to<std::string, release_atom, std::string>,
  /// a committed stock change (stock, version) made by order `order_id` ("" for none)
  caf::reacts_to<std::string, stock_atom, std::string, std::int64_t, std::int64_t>,
  caf::reacts_to<absent_atom>,
  caf::reacts_to<passivate_atom>>;

/// A customer: profile and loyalty; places the customer's orders one at a time, which makes
/// Idempotency-Key checks race-free on a node (the database's key makes them so across nodes).
using customer_actor = caf::typed_actor<
  caf::replies_to<std::string, read_atom, model::principal>::with<model::customer>,
  caf::replies_to<std::string, place_atom, model::order_request>::with<model::order_outcome>,
  /// committed loyalty points (points, version)
  caf::reacts_to<std::string, points_atom, std::int64_t, std::int64_t>,
  caf::reacts_to<absent_atom>,
  caf::reacts_to<passivate_atom>>;

/// A cart: its items persist; prices are read from the products whenever it is shown.
using cart_actor = caf::typed_actor<
  /// the cart priced for shipping to a country
  caf::replies_to<std::string, view_atom, model::principal, std::string>::with<model::cart_view>,
  caf::replies_to<std::string, set_item_atom, model::principal, std::string, std::int64_t,
                  std::string>::with<model::cart_view>,
  caf::replies_to<std::string, checkout_atom, model::principal,
                  model::order_request>::with<model::order_outcome>,
  caf::reacts_to<absent_atom>,
  caf::reacts_to<passivate_atom>>;

/// An order: runs its own placement (the reservation saga), then its status machine.
using order_actor = caf::typed_actor<
  caf::replies_to<std::string, create_atom, model::order_request>::with<model::order>,
  caf::replies_to<std::string, read_atom, model::principal>::with<model::order>,
  caf::replies_to<std::string, pay_atom, model::principal, std::string>::with<model::order>,
  caf::replies_to<std::string, cancel_atom, model::principal>::with<model::order>,
  caf::replies_to<std::string, ship_atom, model::principal>::with<model::order>,
  caf::replies_to<std::string, deliver_atom, model::principal>::with<model::order>,
  /// the payment timeout passed: cancel if still unpaid
  caf::reacts_to<std::string, expire_atom>,
  caf::reacts_to<absent_atom>,
  caf::reacts_to<passivate_atom>>;

} // namespace emporium::actors
