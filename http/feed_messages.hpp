#pragma once
/// What the two feed transports say, without Beast and without the actors: the WebSocket
/// messages (client commands parsed, server messages made) and the event stream's framing.
/// Plain functions on strings, fuzzed (fuzz/feed_command_fuzzer.cpp).
///
/// WebSocket GET /ws, client → server text frames:
///   {"subscribe":"product:ID"}  {"subscribe":"order:ID","after":N}  {"unsubscribe":"product:ID"}
/// server → client: {"type":"subscribed","topic":T,"seq":CURRENT} before any event of the
/// subscription, events as feed_event::ws_text, {"type":"unsubscribed","topic":T}, and
/// {"type":"error","topic":T|null,"status":S,"detail":"..."}.
///
/// Event streams GET /products/{id}/events and /orders/{id}/events: first
/// "retry: 2000\n: subscribed <topic> seq <CURRENT>\n\n", then each event as
/// feed_event::sse_text, and ": keep-alive\n\n" every feeds.ping_s.

#include "core/feed.hpp"
#include "http/message.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace emporium::http::feeds {

// -- WebSocket messages ---------------------------------------------------------------------------

/// A client's message, parsed.
struct command {
  enum class kind { subscribe, unsubscribe, invalid };
  kind k = kind::invalid;
  model::feed_topic topic;           ///< subscribe, unsubscribe
  std::optional<std::int64_t> after; ///< subscribe: resume after this seq
  // invalid: the error to answer (the connection stays)
  int status = 400;
  std::optional<std::string> error_topic; ///< the topic text the client sent, when a string
  std::string detail;
};

/// Parses one text frame: a JSON object with exactly one of "subscribe" or "unsubscribe" (a
/// topic model::parse_topic accepts) and, with subscribe only, "after" (an integer >= 0).
/// Anything else is `invalid` with status 400 and a detail saying what is wrong.
command parse_command(std::string_view text);

/// {"type":"subscribed","topic":T,"seq":N}
std::string ws_subscribed(const std::string& topic, std::int64_t seq);
/// {"type":"unsubscribed","topic":T}
std::string ws_unsubscribed(const std::string& topic);
/// {"type":"error","topic":T|null,"status":S,"detail":D}
std::string ws_error(const std::optional<std::string>& topic, int status,
                     const std::string& detail);

/// The id prefix of a topic's entity ("prod", "ord").
const char* id_prefix(const model::feed_topic& t);
/// The detail of a 404 for a topic whose id is malformed or unknown.
const char* not_found_detail(const model::feed_topic& t);

// -- event streams --------------------------------------------------------------------------------

/// "retry: 2000\n: subscribed <topic> seq <seq>\n\n": the first bytes of a stream.
std::string sse_preamble(const std::string& topic, std::int64_t seq);
/// ": keep-alive\n\n"
const std::string& sse_keep_alive();

/// The seq a stream resumes after: Last-Event-ID, else ?after= (none when neither is given);
/// `bad` is set when the one given is not an integer >= 0.
std::optional<std::int64_t> resume_after(const request& req, bool& bad);

/// Parses a non-negative decimal integer (no sign, no blanks, at most 18 digits).
std::optional<std::int64_t> parse_seq(std::string_view s);

} // namespace emporium::http::feeds
