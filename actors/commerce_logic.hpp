#pragma once
/// Forwards to order_logic.hpp: `actors::commerce` names `actors::order_logic`.

#include "actors/order_logic.hpp"

namespace emporium::actors {
namespace commerce = order_logic;
} // namespace emporium::actors
