#pragma once
/// A cluster of real `emporium serve` nodes for the cluster tests: N server_process children on
/// free HTTP ports and free node ports, all against the test PostgreSQL and Redis, each with
/// EMPORIUM_NODE_PORT and the same EMPORIUM_PEERS list naming every node (its own address
/// included: a node ignores it). Nodes may be reserved: named in every peers list from the start
/// (their node ports picked up front) but started later, as a node added to a running cluster.
///
/// The helpers read what the contract exposes: GET /cluster and GET /cluster/owner/{id} (admin)
/// of each node, and the sum of a metric over the nodes' /metrics. Catch2 assertions are not
/// thread-safe: call the cluster only from the test's thread.

#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "faults/fault_support.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace emporium::cluster_test {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

struct cluster_options {
  int started = 3;   ///< nodes the constructor starts
  int reserved = 0;  ///< more nodes in every peers list, started later with start(i)
  test::env_map env; ///< added to every node's environment (after the cluster's own variables)
};

class cluster {
 public:
  /// Starts the nodes one after the other (each answers /healthz before the next starts) and
  /// waits until every one of them shows every started node up and serves (wait_converged).
  explicit cluster(cluster_options options = {});
  /// Thaws frozen nodes and sends every running node SIGTERM; the server_process destructors
  /// wait for their exits.
  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// Configured nodes: started and reserved.
  int size() const { return static_cast<int>(node_ports_.size()); }
  /// `node_host:node_port`, the node's name in X-Emporium-Node, /cluster and the ring.
  std::string name(int i) const;
  /// The index of the node called `name`; -1 when none is.
  int index_of(const std::string& name) const;
  /// A node that was started at least once (fails the test otherwise).
  test::server_process& node(int i);
  faults::endpoint endpoint(int i);
  /// Nodes that run and are not frozen, in index order.
  std::vector<int> live();
  std::vector<faults::endpoint> endpoints(const std::vector<int>& nodes);

  /// kill -9 (and reap).
  void kill9(int i);
  /// SIGTERM, and the exit within 20 s.
  void stop(int i);
  /// SIGSTOP / SIGCONT.
  void freeze(int i);
  void thaw(int i);
  /// Starts a reserved node the first time, or a stopped one again on the same ports; returns
  /// once it answers /healthz (not once it has joined: see wait_converged).
  void start(int i);

  /// Waits until every live node's GET /cluster names itself, serves exactly when a majority of
  /// the configured nodes is live (`serving`), counts
  /// size() configured and live() live members, and lists itself as "self", every other live
  /// node "up" and every other configured node "down". Returns how long it took; fails the test
  /// after `limit` with each node's last view and log tail.
  ms wait_converged(ms limit = ms{20'000});
  /// True when node i's view is as wait_converged wants it; `why` says what is not.
  bool converged_view(int i, const json& view, std::string& why);

  /// GET /cluster on node i; null when it did not answer 200 within `timeout` (then `failure`,
  /// when given, says what it got).
  json view(int i, ms timeout = ms{3'000}, std::string* failure = nullptr);
  /// GET /cluster/owner/{id} on node i: the owner's name; "" when it did not answer 200.
  std::string owner_on(int i, const std::string& id, ms timeout = ms{3'000});
  /// The owner as every live node names it, node index → name ("" for no answer).
  std::map<int, std::string> owners(const std::string& id);
  /// The owner every live node names; "" when they disagree or one did not answer.
  std::string agreed_owner(const std::string& id);

  /// A metric of node i's /metrics (name with its labels); -1 when absent or no answer.
  double metric(int i, const std::string& name);
  /// The sum of a metric over the live nodes (absent counts as 0).
  double sum_metric(const std::string& name);
  /// The sum of emporium_actors_active{kind="..."} over the live nodes.
  double actors_active(const std::string& kind);

  /// Every node's log path and the tail of its log without the access log lines, for failure
  /// messages.
  std::string logs(std::size_t tail_bytes = 3'000) const;
  /// Every node's log path (kept after the test when EMPORIUM_TEST_KEEP_LOGS is set).
  std::string log_paths() const;

 private:
  std::vector<std::uint16_t> node_ports_;
  std::vector<std::unique_ptr<test::server_process>> nodes_; ///< null: reserved, never started
  std::vector<bool> frozen_;
  std::vector<test::env_map> envs_;
};

/// X-Emporium-Node of an answer.
std::string node_of(const test::http_response& r);

/// Milliseconds since `from`.
double elapsed_ms(steady::time_point from);

} // namespace emporium::cluster_test
