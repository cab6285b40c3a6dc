#include "http/feed_messages.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>

namespace emporium::http::feeds {

namespace {

using json = nlohmann::json;

command invalid(std::string detail, std::optional<std::string> topic = std::nullopt) {
  command c;
  c.k = command::kind::invalid;
  c.status = 400;
  c.detail = std::move(detail);
  c.error_topic = std::move(topic);
  return c;
}

/// The server's messages keep their keys in the contract's order.
using ordered = nlohmann::ordered_json;

std::string dump(const ordered& j) {
  return j.dump(-1, ' ', false, ordered::error_handler_t::replace);
}

} // namespace

command parse_command(std::string_view text) {
  auto j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded())
    return invalid("the message is not JSON");
  if (!j.is_object())
    return invalid("the message must be a JSON object");
  const bool sub = j.contains("subscribe");
  const bool unsub = j.contains("unsubscribe");
  const char* verb = sub ? "subscribe" : "unsubscribe";
  std::optional<std::string> topic_text;
  if ((sub || unsub) && j[verb].is_string())
    topic_text = j[verb].get<std::string>();
  if (sub == unsub)
    return invalid("the message must have exactly one of \"subscribe\" and \"unsubscribe\"",
                   topic_text);
  for (auto& [key, value] : j.items())
    if (key != verb && !(sub && key == "after"))
      return invalid("unknown key \"" + key + "\"", topic_text);
  if (!topic_text)
    return invalid(std::string{"\""} + verb + "\" must be a topic string");
  auto topic = model::parse_topic(*topic_text);
  if (!topic)
    return invalid("a topic is product:<id> or order:<id>", topic_text);
  command c;
  c.k = sub ? command::kind::subscribe : command::kind::unsubscribe;
  c.topic = std::move(*topic);
  if (sub && j.contains("after")) {
    const auto& a = j["after"];
    const bool ok = a.is_number_integer()
                    && (a.is_number_unsigned()
                          ? a.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)
                          : a.get<std::int64_t>() >= 0);
    if (!ok)
      return invalid("\"after\" must be an integer >= 0", topic_text);
    c.after = a.get<std::int64_t>();
  }
  return c;
}

std::string ws_subscribed(const std::string& topic, std::int64_t seq) {
  return dump(ordered{{"type", "subscribed"}, {"topic", topic}, {"seq", seq}});
}

std::string ws_unsubscribed(const std::string& topic) {
  return dump(ordered{{"type", "unsubscribed"}, {"topic", topic}});
}

std::string ws_error(const std::optional<std::string>& topic, int status,
                     const std::string& detail) {
  ordered j{{"type", "error"}};
  j["topic"] = topic ? ordered(*topic) : ordered(nullptr);
  j["status"] = status;
  j["detail"] = detail;
  return dump(j);
}

const char* id_prefix(const model::feed_topic& t) {
  return t.k == model::feed_topic::kind::product ? "prod" : "ord";
}

const char* not_found_detail(const model::feed_topic& t) {
  return t.k == model::feed_topic::kind::product ? "no product has this id"
                                                 : "no order has this id";
}

std::string sse_preamble(const std::string& topic, std::int64_t seq) {
  return "retry: 2000\n: subscribed " + topic + " seq " + std::to_string(seq) + "\n\n";
}

const std::string& sse_keep_alive() {
  static const std::string text = ": keep-alive\n\n";
  return text;
}

std::optional<std::int64_t> parse_seq(std::string_view s) {
  if (s.empty() || s.size() > 18)
    return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::optional<std::int64_t> resume_after(const request& req, bool& bad) {
  bad = false;
  std::string_view given;
  bool present = false;
  if (req.headers.count("last-event-id") > 0) {
    given = req.header("last-event-id");
    present = true;
  } else if (const auto* a = req.query_one("after")) {
    given = *a;
    present = true;
  }
  if (!present)
    return std::nullopt;
  auto v = parse_seq(given);
  if (!v)
    bad = true;
  return v;
}

} // namespace emporium::http::feeds
