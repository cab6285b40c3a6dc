#pragma once
/// Every actor interface of Emporium, as typed_actor aliases, in one place.
///
/// `product_actor`, `customer_actor`, `cart_actor` and `order_actor` are what callers hold (the
/// directory hands them out): each message is a struct of messages.hpp naming its entity in
/// `id`. The managers serve these interfaces (they forward each message to the entity `id`);
/// the entities serve them too, plus two internal messages (`*_entity_actor`):
/// - `absent_atom`, from itself: sent when its activation found nothing, it arrives after the
///   messages that were already waiting (a create among them), and an entity still empty then
///   asks its manager to passivate it (report_absent);
/// - `passivate_atom`, from its manager: stop now.

#include "actors/types.hpp"

namespace emporium::actors {

/// A product: its state lives in the actor while it is active.
using product_actor = caf::typed_actor<
  caf::replies_to<product_read>::with<model::product>,
  caf::replies_to<product_create>::with<model::product>,
  /// answers the new state
  caf::replies_to<product_update>::with<model::product>, caf::replies_to<product_crash>::with<bool>,
  caf::replies_to<product_reserve>::with<model::reservation>, caf::reacts_to<product_release>,
  caf::reacts_to<product_stock>>;

/// A customer: profile and loyalty; places the customer's orders one at a time, which makes
/// Idempotency-Key checks race-free on a node (the database's key makes them so across nodes).
using customer_actor = caf::typed_actor<caf::replies_to<customer_read>::with<model::customer>,
                                        caf::replies_to<customer_place>::with<model::order_outcome>,
                                        caf::reacts_to<customer_points>>;

/// A cart: its items persist; prices are read from the products whenever it is shown.
using cart_actor = caf::typed_actor<caf::replies_to<cart_create>::with<model::cart_view>,
                                    caf::replies_to<cart_read>::with<model::cart_view>,
                                    caf::replies_to<cart_set_item>::with<model::cart_view>,
                                    caf::replies_to<cart_checkout>::with<model::order_outcome>>;

/// An order: runs its own placement (the reservation saga), then its status machine.
using order_actor = caf::typed_actor<
  caf::replies_to<order_create>::with<model::order>,
  caf::replies_to<order_read>::with<model::order>, caf::replies_to<order_pay>::with<model::order>,
  caf::replies_to<order_cancel>::with<model::order>,
  caf::replies_to<order_ship>::with<model::order>,
  caf::replies_to<order_deliver>::with<model::order>, caf::reacts_to<order_expire>>;

/// The messages an entity takes besides its interface's (see above).
template <class Interface>
using entity_actor_of =
  typename Interface::template extend<caf::reacts_to<absent_atom>, caf::reacts_to<passivate_atom>>;

using product_entity_actor = entity_actor_of<product_actor>;
using customer_entity_actor = entity_actor_of<customer_actor>;
using cart_entity_actor = entity_actor_of<cart_actor>;
using order_entity_actor = entity_actor_of<order_actor>;

} // namespace emporium::actors
