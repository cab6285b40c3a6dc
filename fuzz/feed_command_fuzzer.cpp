// Fuzz target: what a WebSocket client of GET /ws sends, one text frame at a time
// (http/feed_messages.cpp: parse_command), the server's answers to it (ws_error, ws_subscribed,
// ws_unsubscribed), and the resume position an event stream is given (parse_seq, as
// Last-Event-ID or ?after=).
//
// What must hold: a command is a subscribe or an unsubscribe of a topic model::parse_topic
// accepts, written back as the client wrote it, with "after" only on a subscribe and never
// negative; anything else is invalid with 400 and a detail, and the error frame the server
// sends for it is one JSON object that names the topic the client gave (or null). A command
// made again from what was parsed parses the same. parse_seq takes only 1 to 18 digits.

#include "core/feed.hpp"
#include "fuzz/check.hpp"
#include "http/feed_messages.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace feeds = emporium::http::feeds;
using json = nlohmann::json;

namespace {

/// The server's frame parsed back: always one JSON object with a "type".
json frame(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  expect(!j.is_discarded() && j.is_object());
  expect(j.contains("type") && j["type"].is_string());
  return j;
}

/// Valid UTF-8 comes back from the server's JSON as it went in (other bytes are replaced).
bool valid_utf8(std::string_view s) {
  try {
    (void) json(std::string{s}).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

void check_command(std::string_view text) {
  auto c = feeds::parse_command(text);
  if (c.k == feeds::command::kind::invalid) {
    expect(c.status == 400);
    expect(!c.detail.empty());
    auto err = frame(feeds::ws_error(c.error_topic, c.status, c.detail));
    expect(err["type"] == "error");
    expect(err["status"] == 400);
    expect(err["topic"].is_null() == !c.error_topic.has_value());
    if (c.error_topic && valid_utf8(*c.error_topic))
      expect(err["topic"] == *c.error_topic);
    return;
  }
  // A topic parse_topic accepts, named as the client named it.
  const bool sub = c.k == feeds::command::kind::subscribe;
  auto j = json::parse(text.begin(), text.end(), nullptr, false);
  expect(j.is_object());
  const auto& given = j.at(sub ? "subscribe" : "unsubscribe");
  expect(given.is_string());
  auto topic = emporium::model::parse_topic(given.get<std::string>());
  expect(topic.has_value());
  expect(!c.topic.id.empty());
  expect(c.topic.name() == given.get<std::string>());
  expect(topic->k == c.topic.k && topic->id == c.topic.id);
  expect(sub || !c.after.has_value());
  if (c.after)
    expect(*c.after >= 0);
  // The same command written again parses the same.
  json again{{sub ? "subscribe" : "unsubscribe", c.topic.name()}};
  if (c.after)
    again["after"] = *c.after;
  auto back = feeds::parse_command(again.dump());
  expect(back.k == c.k);
  expect(back.topic.k == c.topic.k && back.topic.id == c.topic.id);
  expect(back.after == c.after);
  // The frames the server answers a command with.
  if (valid_utf8(c.topic.name())) {
    auto ack = frame(sub ? feeds::ws_subscribed(c.topic.name(), c.after.value_or(0))
                         : feeds::ws_unsubscribed(c.topic.name()));
    expect(ack["topic"] == c.topic.name());
  }
}

void check_seq(std::string_view s) {
  auto v = feeds::parse_seq(s);
  bool digits = !s.empty() && s.size() <= 18;
  for (char ch : s)
    digits = digits && ch >= '0' && ch <= '9';
  expect(v.has_value() == digits);
  if (v) {
    expect(*v >= 0);
    expect(std::to_string(*v).size() <= s.size()); // leading zeros only make it longer
    expect(std::stoll(std::string{s}) == *v);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in{reinterpret_cast<const char*>(data), size};
  check_command(in);
  check_seq(in.substr(0, 24));
  return 0;
}
