#pragma once
/// The HTTP request and response as handlers see them: plain structs, no Beast, so handlers,
/// the router and their tests compile without the heavy networking headers.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace emporium::http {

namespace feeds {
struct channel;
}

/// Header names are stored lower-case.
using header_map = std::multimap<std::string, std::string>;

/// Who sent a request, as the gateway resolved it from its Authorization header (once per
/// request, before the limiter); handlers read it and verify nothing themselves.
struct caller {
  enum class kind {
    anonymous, ///< no Authorization header
    malformed, ///< an Authorization header that is not `Bearer <token>`
    unknown,   ///< a token that is neither the admin key nor a live session
    admin,
    customer,
  };
  kind k = kind::anonymous;
  std::string customer_id; ///< for kind::customer
  /// For kind::customer: when its session expires (ms since the epoch); a feed opened with it
  /// ends then. 0: not known.
  std::int64_t session_expires_at_ms = 0;
};

struct request {
  std::string method; ///< upper-case, as sent
  std::string target; ///< raw request target
  std::string path;   ///< percent-decoded path, without the query
  std::vector<std::pair<std::string, std::string>> query; ///< decoded, in order
  header_map headers;
  std::string body;
  std::string remote; ///< peer address
  std::string client; ///< the client's address as the gateway resolved it (trusted proxies)
  caller who;         ///< set by the gateway

  /// The first value of header `name` (lower-case), or empty.
  std::string_view header(std::string_view name) const;
  /// All values of query parameter `name`.
  std::vector<std::string> query_all(std::string_view name) const;
  /// The first value of query parameter `name`, if present.
  const std::string* query_one(std::string_view name) const;
};

struct response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// Set by the feed handlers: the answer to GET /ws is the WebSocket handshake on this
  /// channel, and an event stream's header is followed by the channel's messages until the
  /// connection ends (no further requests are read on it).
  std::shared_ptr<feeds::channel> feed;

  response& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

/// Where a connection takes the answers to its requests (http::session), by request number.
class answer_sink {
 public:
  virtual ~answer_sink() = default;
  /// The answer, ready: on the connection's thread it is recorded at once.
  virtual void answer(std::uint64_t seq, response res) = 0;
  /// A function that makes the answer, run on the connection's thread.
  virtual void answer_later(std::uint64_t seq, std::function<response()> make) = 0;
};

/// Hands the answer back to the connection, exactly once, from any thread. `later` hands over a
/// function that makes the answer instead, which the connection runs on its own strand: a
/// runtime callback (on a CAF thread) passes its result into it as a value, and the encoding
/// runs on the connection's thread, not the actor's.
class responder {
 public:
  using make_fn = std::function<response()>;

  responder() = default;
  /// For tests and tools: every answer, made or ready, reaches `deliver` as a function.
  explicit responder(std::function<void(make_fn)> deliver) : deliver_(std::move(deliver)) {}
  /// A connection's: a ready answer reaches it without being wrapped in a function.
  responder(std::shared_ptr<answer_sink> sink, std::uint64_t seq)
    : sink_(std::move(sink)), seq_(seq) {}

  void operator()(response res) const {
    if (sink_)
      return sink_->answer(seq_, std::move(res));
    deliver_([res = std::move(res)]() mutable { return std::move(res); });
  }
  void later(make_fn make) const {
    if (sink_)
      return sink_->answer_later(seq_, std::move(make));
    deliver_(std::move(make));
  }

 private:
  std::function<void(make_fn)> deliver_;
  std::shared_ptr<answer_sink> sink_;
  std::uint64_t seq_ = 0;
};

/// Splits a request target into decoded path and query; false when the encoding is malformed.
bool parse_target(std::string_view target, std::string& path,
                  std::vector<std::pair<std::string, std::string>>& query);

/// Whether some item of the comma-separated header value `list` (RFC 9110 §5.6.1: blanks
/// around each item ignored) satisfies `pred(std::string_view item)`: Connection, Upgrade,
/// If-None-Match.
template <class Pred>
bool any_list_item(std::string_view list, Pred pred) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
      item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t'))
      item.remove_suffix(1);
    if (pred(item))
      return true;
    if (comma == std::string_view::npos)
      break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

} // namespace emporium::http
