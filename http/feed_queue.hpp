#pragma once
/// The send side of one feed connection (a WebSocket or an event stream), without Beast: a
/// bounded queue of messages, pushed by the runtime's event hub on an actor thread and by the
/// connection itself, drained on the connection's strand; and the feed_sink of one subscription,
/// which pushes into its connection's queue.
///
/// Events are queued as the hub's shared_ptr<const feed_event> (one event, however many
/// subscribers: no copy per subscriber); everything else is a text made for this connection.
/// Acknowledgements go through the same queue, pushed from the subscribe callback, which the hub
/// runs before it delivers any event of that subscription: so no event overtakes its
/// acknowledgement.

#include "core/feed.hpp"
#include "core/model.hpp"

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace emporium::http {

/// One message waiting on a feed connection.
struct feed_message {
  enum class kind {
    event,  ///< `event`: its WebSocket frame or its event-stream block
    text,   ///< `text`, sent as it is (acknowledgements, errors, keep-alives)
    failed, ///< the subscription of `topic` was refused (`status`, `text`: the detail)
    ended,  ///< the subscription of `topic` ended on the server's side (`status`, `text`)
  };
  kind k = kind::text;
  std::shared_ptr<const model::feed_event> event;
  std::string text;
  std::string topic;
  int status = 0;

  static feed_message of(std::shared_ptr<const model::feed_event> e) {
    feed_message m;
    m.k = kind::event;
    m.event = std::move(e);
    return m;
  }
  static feed_message of_text(std::string t) {
    feed_message m;
    m.text = std::move(t);
    return m;
  }
};

/// The bounded queue of one connection. Thread-safe; never blocks beyond its own short lock.
class feed_queue {
 public:
  explicit feed_queue(std::size_t max_messages) : max_(max_messages) {}

  /// Called outside the lock, on the pushing thread, when a push finds nobody told yet that
  /// messages wait (and when the queue overflows): the connection schedules a drain on its
  /// strand. Set before the first push.
  void on_ready(std::function<void()> fn);

  /// Queues `m`, unless `live` (a flag this queue's lock guards, see retire) is false: then the
  /// message is dropped and true returned. False when the queue is closed, or full: then it
  /// overflows (overflowed() is true, the connection is told and closes) and takes no more.
  bool push(feed_message m, const bool* live = nullptr);

  /// Clears `live` under the lock, so that no push guarded by it succeeds afterwards, and then
  /// queues `last` if given (false when it could not: full or closed).
  bool retire(bool& live, std::optional<feed_message> last = std::nullopt);

  /// Moves every waiting message to the end of `out` (on the connection's strand); the next
  /// push tells the connection again.
  void take(std::deque<feed_message>& out);

  /// Takes nothing more; what waits is dropped.
  void close();

  bool closed() const;
  bool overflowed() const;
  std::size_t size() const;
  std::size_t capacity() const { return max_; }

 private:
  mutable std::mutex mtx_;
  const std::size_t max_;
  std::deque<feed_message> q_;
  std::function<void()> ready_;
  bool told_ = false;
  bool closed_ = false;
  bool overflowed_ = false;
};

/// The sink of one subscription: pushes into its connection's queue. Once retired (unsubscribed,
/// refused, ended, or its connection closed) it queues nothing more.
class queue_sink : public model::feed_sink {
 public:
  queue_sink(std::shared_ptr<feed_queue> q, std::string topic)
    : q_(std::move(q)), topic_(std::move(topic)) {}

  const std::string& topic() const { return topic_; }

  /// An event: queued, or false when the queue is full or closed (the hub then drops the
  /// subscription). After the sink was retired, true and nothing queued (the hub may deliver
  /// one more event while the unsubscription reaches it).
  bool deliver(const std::shared_ptr<const model::feed_event>& e) override;

  /// Queues an `ended` message with the failure's status and retires the sink.
  void end(const failure& why) override;

  /// From the subscribe callback on success: queues the acknowledgement `text` (before any
  /// event of the subscription). False when the queue could not take it.
  bool acknowledge(std::string text);

  /// From the subscribe callback on failure: queues a `failed` message and retires the sink.
  void refuse(int status, std::string detail);

  /// Unsubscribed by the client: retires the sink and queues `last` (the confirmation) after
  /// every event already queued for it.
  void retire(std::optional<feed_message> last = std::nullopt);

 private:
  std::shared_ptr<feed_queue> q_;
  std::string topic_;
  bool live_ = true; ///< guarded by the queue's lock
};

} // namespace emporium::http
