#pragma once
/// Real-time feeds as every layer sees them: a topic, an event of it, and the sink a
/// subscription delivers into. No library headers: the actors' event hub (actors/) produces
/// these, the HTTP transports (WebSocket, Server-Sent Events) consume them.
///
/// A topic is `product:<id>` (anyone) or `order:<id>` (its customer and the admin). Each
/// entity's events carry a `seq` that only grows by one per event (the entity row's event
/// counter, bumped in the transaction that writes the event to the outbox), so a subscriber
/// can tell a gap from a quiet topic.

#include "core/model.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace emporium::model {

/// A topic, parsed: the kind of entity and its id.
struct feed_topic {
  enum class kind { product, order };
  kind k = kind::product;
  std::string id;

  /// "product:<id>" or "order:<id>".
  std::string name() const { return (k == kind::product ? "product:" : "order:") + id; }
};

/// Parses "product:<id>" or "order:<id>"; none when the prefix is unknown or the id empty
/// (whether the id is well formed is checked where the entity is looked up).
inline std::optional<feed_topic> parse_topic(std::string_view s) {
  auto colon = s.find(':');
  if (colon == std::string_view::npos || colon + 1 >= s.size())
    return std::nullopt;
  auto prefix = s.substr(0, colon);
  feed_topic t;
  if (prefix == "product")
    t.k = feed_topic::kind::product;
  else if (prefix == "order")
    t.k = feed_topic::kind::order;
  else
    return std::nullopt;
  t.id = std::string{s.substr(colon + 1)};
  return t;
}

/// One event of one topic, with both wire forms made once (however many subscribers get it).
struct feed_event {
  std::string topic; ///< "product:<id>"
  std::int64_t seq = 0;
  std::string type; ///< "stock_changed", "order_status"
  std::string data; ///< the event's JSON object, as stored in the outbox
  /// The WebSocket text frame:
  /// {"topic":"product:ID","seq":N,"type":"stock_changed","data":{...}}
  std::string ws_text;
  /// The Server-Sent Events block: "id: N\nevent: stock_changed\ndata: {...}\n\n"
  std::string sse_text;
};

/// Builds an event with its wire forms. `data` must be one JSON object on one line (the
/// outbox's jsonb rendered by PostgreSQL is); `topic` and `type` are ours, never client text.
inline std::shared_ptr<const feed_event> make_feed_event(std::string topic, std::int64_t seq,
                                                         std::string type, std::string data) {
  auto e = std::make_shared<feed_event>();
  const auto n = std::to_string(seq);
  e->ws_text.reserve(48 + topic.size() + type.size() + data.size());
  e->ws_text.append("{\"topic\":\"")
    .append(topic)
    .append("\",\"seq\":")
    .append(n)
    .append(",\"type\":\"")
    .append(type)
    .append("\",\"data\":")
    .append(data)
    .append("}");
  e->sse_text.reserve(24 + type.size() + data.size());
  e->sse_text.append("id: ").append(n).append("\nevent: ").append(type).append("\ndata: ");
  e->sse_text.append(data).append("\n\n");
  e->topic = std::move(topic);
  e->seq = seq;
  e->type = std::move(type);
  e->data = std::move(data);
  return e;
}

/// Where a subscription delivers. Implemented by the transports (one per WebSocket
/// subscription or per event stream); called by the runtime's event hub on an actor thread.
/// Implementations must not block: queue and return.
class feed_sink {
 public:
  virtual ~feed_sink() = default;

  /// The next event of the topic: seq is exactly one more than the last one delivered (or than
  /// the seq the subscription started from). False when the sink cannot take it (its
  /// connection's bounded send queue is full, or the connection closed): the hub drops the
  /// subscription at once and calls nothing on this sink again.
  virtual bool deliver(const std::shared_ptr<const feed_event>& e) = 0;

  /// The subscription ended for a reason other than unsubscribe: the server is shutting down
  /// (errc::unavailable), or the events it needs are no longer kept (errc::gone). Nothing is
  /// delivered after it. Not called for a sink whose deliver returned false.
  virtual void end(const failure& why) = 0;
};

} // namespace emporium::model
