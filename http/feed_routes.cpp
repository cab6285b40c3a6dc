/// The feeds' handlers: GET /ws (the answer is the WebSocket handshake, which the session and
/// websocket_session.cpp carry out) and the event streams of GET /products/{id}/events and
/// GET /orders/{id}/events (the answer is a header followed by the channel's messages). No
/// Beast here: a handler answers with a response whose `feed` is set.
#include "http/feed_protocol.hpp"
#include "http/gateway.hpp"
#include "http/handler_support.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"

#include <algorithm>
#include <cctype>

namespace emporium::http {

namespace {

bool has_token(std::string_view list, std::string_view token) {
  // A comma-separated header value containing `token`, in any case.
  return any_list_item(list, [token](std::string_view item) {
    return item.size() == token.size()
           && std::equal(item.begin(), item.end(), token.begin(), [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a))
                       == std::tolower(static_cast<unsigned char>(b));
              });
  });
}

response too_many_connections() {
  auto res = problem(429, "too many feed connections from this address");
  res.header("Retry-After", "5");
  return res;
}

void websocket(app& a, const request& req, const path_params&, const query_args&,
               responder respond) {
  if (!has_token(req.header("upgrade"), "websocket")
      || !has_token(req.header("connection"), "upgrade"))
    return respond(problem(400, "GET /ws is a WebSocket: send Upgrade: websocket"));
  if (req.who.k == caller::kind::malformed)
    return respond(problem(401, "the Authorization header must be 'Bearer <token>'"));
  if (req.who.k == caller::kind::unknown)
    return respond(problem(401, "the token is unknown or expired"));
  auto key = gateway::address_key(req.client);
  if (!a.feed_connections->add(key, feeds::transport::ws))
    return respond(too_many_connections());
  auto bucket = gateway::bucket_of(req.who, key);
  auto ch = std::make_shared<feeds::channel>(feeds::transport::ws, a.feed_connections,
                                             std::move(key), a.runtime, principal_of(req.who),
                                             a.settings.feeds);
  ch->target = req.target;
  ch->expires_at_ms = req.who.session_expires_at_ms;
  ch->limit_key = limit_key(route_class::read, bucket);
  for (const auto& [name, value] : req.headers)
    if (name != "authorization")
      ch->headers.emplace(name, value);
  response res;
  res.status = 101;
  res.content_type.clear();
  res.feed = std::move(ch);
  respond(std::move(res));
}

void event_stream(app& a, const request& req, model::feed_topic topic, responder respond) {
  bool bad = false;
  auto after = feeds::resume_after(req, bad);
  if (bad)
    return respond(problem(400, "Last-Event-ID (or after) must be an integer >= 0"));
  auto key = gateway::address_key(req.client);
  if (!a.feed_connections->add(key, feeds::transport::sse))
    return respond(too_many_connections());
  auto ch = std::make_shared<feeds::channel>(feeds::transport::sse, a.feed_connections,
                                             std::move(key), a.runtime, principal_of(req.who),
                                             a.settings.feeds);
  ch->topic = std::move(topic);
  ch->expires_at_ms = req.who.session_expires_at_ms;
  ch->sink = std::make_shared<queue_sink>(ch->queue, ch->topic.name());
  // Taken before the callback moves the channel in (arguments are evaluated in any order).
  auto sink = ch->sink;
  // Copied before the call: the callback below takes `ch` over, and the order in which a call's
  // arguments are evaluated is unspecified (GCC moved `ch` out first, then read ch->who: null).
  auto who = ch->who;
  auto topic_copy = ch->topic;
  a.runtime.subscribe(
    std::move(who), std::move(topic_copy), after, std::move(sink),
    [ch = std::move(ch), respond = std::move(respond)](result<std::int64_t> r) mutable {
      if (!r) {
        // Never subscribed: nothing to unsubscribe when the channel goes.
        ch->sink->retire();
        ch->sink.reset();
        ch.reset();
        return respond.later([f = r.error()] { return problem(f); });
      }
      // Through the queue, before any event of the subscription (the hub delivers none before
      // this callback returns).
      ch->sink->acknowledge(feeds::sse_preamble(ch->topic.name(), *r));
      respond.later([ch = std::move(ch)]() mutable {
        response res;
        res.content_type = "text/event-stream";
        res.header("Cache-Control", "no-store");
        res.header("X-Accel-Buffering", "no"); // a buffering proxy (nginx) passes events at once
        res.feed = std::move(ch);
        return res;
      });
    });
}

void product_events(app& a, const request& req, const path_params& p, const query_args&,
                    responder respond) {
  event_stream(a, req, {model::feed_topic::kind::product, p["id"]}, std::move(respond));
}

void order_events(app& a, const request& req, const path_params& p, const query_args&,
                  responder respond) {
  event_stream(a, req, {model::feed_topic::kind::order, p["id"]}, std::move(respond));
}

} // namespace

const std::vector<binding>& feed_handlers() {
  static const std::vector<binding> list{
    {"websocket", websocket}, {"productEvents", product_events}, {"orderEvents", order_events}};
  return list;
}

} // namespace emporium::http
