#pragma once
/// The node's PostgreSQL LISTEN connection for the real-time feeds: a thread of its own (never a
/// CAF worker or an Asio thread) that waits on the connection's socket and hands each batch of
/// notifications of channel event_store::channel, in commit order, to `on_events`. On a lost
/// connection it reconnects with backoff (100 ms doubling to 5 s) and says so through
/// `on_listening(false)`, then `on_listening(true)` once it listens again: notifications sent
/// meanwhile are lost, and the receiver reads what it missed from the outbox.
///
/// The callbacks run on the listener's thread and must not block.

#include "persistence/event_store.hpp"
#include "persistence/pg.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace emporium::persistence {

class event_listener {
 public:
  struct callbacks {
    std::function<void(std::vector<event_store::stored_event>)> on_events;
    std::function<void(bool up)> on_listening;
  };

  /// Starts the thread; it connects at once.
  event_listener(pg_options opts, callbacks cbs);
  ~event_listener();
  event_listener(const event_listener&) = delete;
  event_listener& operator=(const event_listener&) = delete;

  /// Wakes the thread and joins it (a connection attempt in progress finishes first, at most
  /// the connect timeout). Idempotent; no callback runs after it returns.
  void stop();

  bool listening() const { return listening_.load(std::memory_order_relaxed); }
  /// Times it listened again after losing the connection.
  std::int64_t reconnects() const { return reconnects_.load(std::memory_order_relaxed); }

 private:
  /// Waits up to `ms` for the socket `fd` (or -1: none) or the wake-up; false when stopping.
  bool wait(int fd, int ms);
  void run();

  pg_options opts_;
  callbacks cbs_;
  int wake_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> listening_{false};
  std::atomic<std::int64_t> reconnects_{0};
  std::thread thread_;
};

} // namespace emporium::persistence
