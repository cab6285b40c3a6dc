#pragma once
/// The cluster: several nodes over CAF's io middleman, any node answering for any entity.
///
/// - Membership (from configuration): every node knows the configured members (itself and
///   cluster.peers). Of each pair, the node with the smaller name dials the other (one
///   connection per pair), asynchronously with a timeout and retried with back-off; the two
///   exchange a node_hello (their membership actor and managers). A peer is up from its hello
///   until its connection drops (killed: at once; frozen or cut off: after
///   cluster.peer_timeout_ms of silence, the middleman's connection timeout on both sides).
/// - Ownership: the live members form a core::ring; the directory resolves each key on it.
///   Every membership change publishes a new view (its version grows) and tells the local
///   managers to passivate the entities they no longer own; the new owner activates them from
///   PostgreSQL on their next message.
/// - Lease and fencing: every node heartbeats its peers, which acknowledge each heartbeat; a
///   node serves entities only while a majority of the configured members acknowledged a
///   heartbeat it *sent* within peer_timeout_ms - heartbeat_ms (core/lease.hpp: what waited in
///   a frozen node's mailbox extends nothing). Without it (cut off, or thawed after a freeze) it
///   resolves every key to the refuser (503) and passivates everything, before its peers re-home
///   its keys (they wait the full peer timeout), so no two nodes serve a key from memory at once.
/// - Forwarding: one link actor per peer forwards the messages for that peer's keys and keeps
///   their promises; when the peer goes down it answers them at once (CAF would let them wait
///   their full timeout): reads are sent again to the key's new owner, writes get 503 (their
///   outcome is unknown; clients retry with their Idempotency-Key).

#include "actors/directory.hpp"
#include "actors/runtime.hpp"
#include "config/settings.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace emporium::actors {

class deadline_keeper;

/// Counters of the forwarding, and the membership as last published (written by the cluster's
/// actors, read by /metrics and /cluster from any thread).
struct cluster_counters {
  /// Upper bounds of the forward-latency buckets, in microseconds (the last is +Inf).
  static constexpr std::array<std::int64_t, 10> bucket_us{
    100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 100'000, 1'000'000};
  std::atomic<std::int64_t> forwarded{0}; ///< requests sent to another node
  std::atomic<std::int64_t> failed{0};    ///< answered 503 at once: their node died
  std::atomic<std::int64_t> retried{0};   ///< reads sent again to a new owner
  std::shared_ptr<std::atomic<std::int64_t>> moved = std::make_shared<std::atomic<std::int64_t>>(0);
  std::array<std::atomic<std::int64_t>, bucket_us.size() + 1> buckets{}; ///< forward latency
  std::atomic<std::int64_t> latency_sum_us{0};
  std::atomic<std::int64_t> latency_count{0};

  void record_latency(std::int64_t us);

  cluster_status status() const;
  void set_status(cluster_status s);

 private:
  mutable std::mutex mtx_;
  cluster_status status_;
};

/// The protocol identifier peers must share (middleman.app-identifiers): a node of another
/// build refuses to join.
std::string cluster_protocol();

/// Loads the io middleman with the heartbeat, connection timeout and protocol identifier of
/// `s`; nothing when cluster.node_port is unset.
void configure_cluster(caf::actor_system_config& cfg, const config::settings& s);

/// Starts the cluster on `sys` (configured by configure_cluster): the refuser, one link per
/// peer, and the membership actor published on the node port. Turns on the directory's
/// ring resolution. Throws when the node port cannot be opened. Returns the membership actor
/// (stop it to leave the cluster; it stops its links). A forwarded call waits at most
/// `timeout`, its deadline kept by `deadlines` (CAF's clock when null).
caf::actor start_cluster(caf::actor_system& sys, const config::settings& s, directory& dir,
                         std::shared_ptr<cluster_counters> counters, caf::timespan timeout,
                         deadline_keeper* deadlines);

} // namespace emporium::actors
