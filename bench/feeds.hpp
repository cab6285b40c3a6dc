#pragma once
/// The real-time feeds under load (bench/README.md, "Feeds"):
///
///   subscribe  N WebSocket subscribers of product topics (GET /ws), all acknowledged, then M
///              admin stock changes a few hundred ms apart: the fan-out latency from sending
///              each PATCH to every subscriber receiving its event, deliveries missing, seqs
///              not consecutive, and the server's memory per subscriber.
///   stalled subscriber (with any write scenario): one WebSocket subscriber with a tiny receive
///              buffer that never reads, opened before the run; afterwards it reads what is
///              left to learn whether the server closed it (1013) and scrapes
///              emporium_feed_dropped_total.
///
/// Beast stays inside feeds.cpp.

#include "bench/load.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace emporium::bench::feeds {

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit now in force.
std::uint64_t raise_open_files();

struct subscribe_options {
  target where;
  std::vector<std::string> product_ids; ///< subscriber i follows product_ids[i % size]
  int subscribers = 10'000;
  int changes = 20;           ///< stock changes, change k on product_ids[k % size]
  double interval_ms = 300;   ///< between two changes
  int threads = 1;            ///< io_contexts the subscribers are spread over
  int connect_parallel = 256; ///< handshakes in flight at once
  double timeout_s = 10;      ///< for all to subscribe: per 1,000 subscribers; after the last
                              ///< change: for the last deliveries
  std::string admin_key;
  int server_pid = 0; ///< for VmRSS before and after subscribing; 0: not measured
};

/// Runs the scenario; the result's "passed" is false when a delivery is missing, a seq was not
/// consecutive, or a subscriber could not subscribe.
nlohmann::json run_subscribe(const subscribe_options& o);

/// One subscriber that never reads after its subscription request (SO_RCVBUF as small as the
/// kernel allows), for "a stalled subscriber costs writers nothing".
class stalled_subscriber {
 public:
  stalled_subscriber(const target& where, std::string topic);
  ~stalled_subscriber();
  stalled_subscriber(const stalled_subscriber&) = delete;
  stalled_subscriber& operator=(const stalled_subscriber&) = delete;

  /// Connects, upgrades and sends the subscription (does not wait for its answer). Throws on
  /// failure.
  void start();
  /// Reads everything that is left, for at most `drain_timeout_s`: whether the server closed
  /// the connection, its close code, the events and seqs received.
  nlohmann::json finish(double drain_timeout_s);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A number of a Prometheus text (`name` may carry labels); -1 when absent.
double metric_value(const std::string& text, const std::string& name);

} // namespace emporium::bench::feeds
