#pragma once
/// A cluster node's lease (actors/cluster.cpp): until when it may serve entities from memory.
///
/// A node serves while a majority of the configured members, itself included, has acknowledged
/// a heartbeat it sent within `term` (cluster.peer_timeout_ms - cluster.heartbeat_ms). Only an
/// acknowledgement extends the lease, and only from the time the acknowledged heartbeat was
/// *sent*, on this node's own clock: the acknowledgements (or heartbeats of peers) that waited
/// in the mailbox of a node frozen for a while extend nothing when it thaws, because what they
/// vouch for is that far in the past.
///
/// Why the term is safe: a peer received the heartbeat after it was sent, and declares this node
/// down only after peer_timeout_ms of silence from it, so this node stops serving at least
/// heartbeat_ms before any peer re-homes its keys. No clocks are compared across nodes; they
/// only have to run at about the same rate.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <vector>

namespace emporium::core {

using lease_clock = std::chrono::steady_clock;

/// The end of the lease. `acked`: for each live peer, when this node sent the latest heartbeat
/// that peer acknowledged. `quorum`: the majority of the configured members (1: a single node,
/// whose lease never ends). time_point::min() when too few peers are live.
inline lease_clock::time_point lease_end(std::vector<lease_clock::time_point> acked, int quorum,
                                         lease_clock::duration term) {
  if (quorum <= 1)
    return lease_clock::time_point::max();
  const auto needed = static_cast<std::size_t>(quorum - 1); // the peers besides this node
  if (acked.size() < needed)
    return lease_clock::time_point::min();
  std::nth_element(acked.begin(), acked.begin() + static_cast<std::ptrdiff_t>(needed - 1),
                   acked.end(), std::greater<>());
  return acked[needed - 1] + term;
}

} // namespace emporium::core
