#pragma once
/// What a feed connection is before it starts, without Beast: the channel (its queue, its
/// caller, its place in the per-address count) and the registry of feed connections. The
/// messages both transports speak are in feed_messages.hpp.

#include "actors/runtime.hpp"
#include "config/settings.hpp"
#include "core/feed.hpp"
#include "http/feed_messages.hpp"
#include "http/feed_queue.hpp"
#include "http/message.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace emporium::http {
class rate_limiter;
}

namespace emporium::http::feeds {

// -- connections ----------------------------------------------------------------------------------

enum class transport { ws, sse };

/// Feed connections open per client address (feeds.max_connections_per_address) and per
/// transport (the emporium_feed_connections gauge). One per server application.
class registry {
 public:
  explicit registry(int max_per_address) : max_(max_per_address) {}

  /// Counts a connection of `key`; false (nothing counted) when the address has the maximum.
  bool add(const std::string& key, transport t);
  void remove(const std::string& key, transport t);
  std::int64_t open(transport t) const;

 private:
  mutable std::mutex mtx_;
  int max_;
  std::map<std::string, int> per_address_;
  std::int64_t ws_ = 0;
  std::int64_t sse_ = 0;
};

/// One feed connection as the handler made it, once registry::add counted it: its queue, its
/// caller, its place in the registry (given back when the channel goes). An event stream's channel
/// holds its one subscription and unsubscribes it when destroyed; a WebSocket's subscriptions are
/// its session's.
struct channel {
  channel(transport t, std::shared_ptr<registry> reg, std::string address_key, actors::runtime& rt,
          model::principal who, const config::feeds_settings& cfg);
  ~channel();
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  transport kind;
  std::shared_ptr<registry> reg;
  std::string address_key;
  actors::runtime& rt;
  model::principal who;
  config::feeds_settings cfg;
  std::shared_ptr<feed_queue> queue;

  // An event stream's subscription.
  model::feed_topic topic;
  std::shared_ptr<queue_sink> sink;

  // A WebSocket's upgrade request, for the handshake.
  std::string target;
  header_map headers;
  /// A WebSocket's subscribe commands each take a token of the client's read bucket, as a
  /// request does: `limit_key` is that bucket's key (set by the handler), `limiter` the server's
  /// (set by the HTTP session when it hands the connection over; none in unit tests).
  std::string limit_key;
  rate_limiter* limiter = nullptr;
  /// When the caller's session expires (ms since the epoch; 0: no session, or not known): the
  /// connection ends then (a WebSocket closes with 1008, an event stream ends), and the client
  /// reconnects with a fresh token.
  std::int64_t expires_at_ms = 0;
};

/// How long until `ch`'s session expires (zero once it has); nothing when it has no session.
inline std::optional<std::chrono::milliseconds> time_left(const channel& ch) {
  if (ch.expires_at_ms == 0)
    return std::nullopt;
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  return std::chrono::milliseconds(std::max<std::int64_t>(0, ch.expires_at_ms - now));
}

} // namespace emporium::http::feeds
