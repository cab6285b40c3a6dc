#pragma once
/// Reads of the outbox for the real-time feeds (actors/runtime_feeds.cpp): a topic's head (its
/// entity's event counter, and an order's customer), and its events after a seq, a page at a
/// time. Also the format of the notifications order_store::insert_event sends. Blocking; called
/// on worker threads only (parse_notification excepted: it is plain string work).

#include "core/feed.hpp"

#include <pqxx/pqxx>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace emporium::persistence::event_store {

/// The channel every node LISTENs on.
inline constexpr const char* channel = "emporium_events";

/// One outbox row.
struct stored_event {
  std::string entity; ///< the topic: "product:<id>" or "order:<id>"
  std::int64_t seq = 0;
  std::string type;
  std::string payload; ///< the jsonb rendered by PostgreSQL, one line
};

/// A topic's entity as it stands: its last event's seq (0: none yet) and, for an order, its
/// customer.
struct head {
  std::int64_t seq = 0;
  std::string customer_id;
};

/// The head of the topic's entity; none when it does not exist.
std::optional<head> read_head(pqxx::transaction_base& tx, const model::feed_topic& topic);

/// The heads of several topics at once (those whose entity exists), for a resync after the
/// notifications may have been missed.
std::vector<std::pair<std::string, std::int64_t>> read_heads(
  pqxx::transaction_base& tx, const std::vector<model::feed_topic>& topics);

/// At most `limit` events of `entity` with seq > `after`, in seq order.
std::vector<stored_event> read_after(pqxx::transaction_base& tx, const std::string& entity,
                                     std::int64_t after, int limit);

/// The seq of the oldest event of `entity` the outbox still keeps (retention deletes by age).
std::optional<std::int64_t> oldest_seq(pqxx::transaction_base& tx, const std::string& entity);

/// A notification's payload: "<entity>\t<seq>\t<type>\t<payload json>" (no field but the last
/// can hold a tab: entities are ids, types are ours, and jsonb escapes control characters).
/// None when it does not have that shape.
std::optional<stored_event> parse_notification(std::string_view text);

} // namespace emporium::persistence::event_store
