#pragma once
/// Request deadlines kept by one thread per node instead of CAF's clock.
///
/// `self->request(dest, timeout, msg)` in CAF 0.17.6 puts an event into the actor clock's
/// queue and wakes the clock's thread, and that event is never cancelled: at the deadline the
/// clock sends the requester a request_timeout error even when the answer came long before, and
/// the requester's scheduler thread wakes to drop it. Every request thus costs two thread
/// hand-offs that do no work (10 % of the server's CPU went to the clock thread alone in the
/// checkout profile). Here a request is sent without a timeout and its deadline is recorded
/// (one lock, no wake-up); the keeper's thread sleeps until the earliest deadline and then sends
/// the same request_timeout error, in the same way CAF's clock does, only for the requests not
/// answered by then. The answer's handler settles the deadline.
///
/// `request_within` is the one way actors make such a request; with no keeper (the unit tests
/// on CAF's deterministic coordinator, whose clock is simulated) it is CAF's timed request.

#include <caf/all.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace emporium::actors {

/// One request's deadline: settled by its answer, or expired by the keeper.
class deadline_ticket {
 public:
  using clock = std::chrono::steady_clock;

  deadline_ticket(clock::time_point due, caf::weak_actor_ptr receiver, caf::message_id response,
                  caf::message content = {})
    : due_(due),
      receiver_(std::move(receiver)),
      response_(response),
      content_(std::move(content)) {}

  /// Called by whatever handles the answer (the answer or any error): the keeper then does
  /// nothing at the deadline. Safe from any thread.
  void settle() { settled_.store(true, std::memory_order_release); }
  bool settled() const { return settled_.load(std::memory_order_acquire); }
  clock::time_point due() const { return due_; }

 private:
  friend class deadline_keeper;
  clock::time_point due_;
  caf::weak_actor_ptr receiver_; ///< weak: a deadline does not keep a stopped actor's memory
  caf::message_id response_;     ///< the request's response id; unused for a message
  caf::message content_;         ///< the message to send, or none for a request's timeout
  std::atomic<bool> settled_{false};
};

using deadline_ptr = std::shared_ptr<deadline_ticket>;

class deadline_keeper {
 public:
  using clock = deadline_ticket::clock;

  deadline_keeper();
  ~deadline_keeper(); ///< stops the thread; deadlines not yet due are dropped
  deadline_keeper(const deadline_keeper&) = delete;
  deadline_keeper& operator=(const deadline_keeper&) = delete;

  /// From now on, unless the returned ticket is settled first, `requester` receives a
  /// caf::sec::request_timeout error as the response `response` at `due` (a few hundred
  /// microseconds later at most, the time the thread takes to wake).
  deadline_ptr watch(const caf::strong_actor_ptr& requester, caf::message_id response,
                     clock::time_point due);

  /// `receiver->delayed_send(...)` of `content` at `due`, unless the returned ticket is settled
  /// first: no wake-up of any thread now, and nothing at all once settled.
  deadline_ptr send_at(const caf::strong_actor_ptr& receiver, clock::time_point due,
                       caf::message content);

  /// Deadlines that expired unsettled (each sent its error or message); for metrics and tests.
  std::int64_t expired() const { return expired_.load(std::memory_order_relaxed); }

 private:
  void run();
  deadline_ptr add(deadline_ptr t);

  struct later_first {
    bool operator()(const deadline_ptr& a, const deadline_ptr& b) const {
      return a->due() > b->due();
    }
  };

  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<deadline_ptr> incoming_; ///< guarded by mu_
  /// When the thread wakes next (guarded by mu_): watch() wakes it sooner only for a deadline
  /// before that, which under a steady load of alike timeouts is almost never.
  clock::time_point next_wake_ = clock::time_point::max();
  bool stopping_ = false; ///< guarded by mu_
  /// Owned by the thread.
  std::priority_queue<deadline_ptr, std::vector<deadline_ptr>, later_first> due_;
  std::atomic<std::int64_t> expired_{0};
  std::thread thread_;
};

namespace detail {

/// `f` behind a handler of the very same signature (so that CAF matches it as it would `f`)
/// that settles `t` first.
template <class F, class... Args>
auto settling(deadline_ptr t, F f, caf::detail::type_list<Args...>) {
  return [t = std::move(t), f = std::move(f)](Args... xs) mutable -> decltype(auto) {
    if (t)
      t->settle();
    return f(std::forward<Args>(xs)...);
  };
}

template <class F>
auto settling(const deadline_ptr& t, F f) {
  using args = typename caf::detail::get_callable_trait<F>::arg_types;
  return settling(t, std::move(f), args{});
}

} // namespace detail

/// A response handle whose handlers settle the request's deadline: `then` and `await` take
/// what the response handle of the request takes.
template <class Handle>
class timed_response {
 public:
  timed_response(Handle h, deadline_ptr t) : h_(std::move(h)), t_(std::move(t)) {}

  template <class... Fs>
  void then(Fs... fs) {
    h_.then(detail::settling(t_, std::move(fs))...);
  }

  template <class... Fs>
  void await(Fs... fs) {
    h_.await(detail::settling(t_, std::move(fs))...);
  }

 private:
  Handle h_;
  deadline_ptr t_;
};

/// `self->request(dest, timeout, xs...)`, its deadline kept by `keeper` when there is one.
template <class Self, class Handle, class... Ts>
auto request_within(Self* self, deadline_keeper* keeper, const Handle& dest, caf::timespan timeout,
                    Ts&&... xs) {
  if (!keeper) {
    auto h = self->request(dest, timeout, std::forward<Ts>(xs)...);
    return timed_response<decltype(h)>{std::move(h), nullptr};
  }
  auto h = self->request(dest, caf::infinite, std::forward<Ts>(xs)...);
  auto t = keeper->watch(self->ctrl(), h.id(), deadline_keeper::clock::now() + timeout);
  return timed_response<decltype(h)>{std::move(h), std::move(t)};
}

/// `self->delayed_send(self, delay, xs...)`, kept by `keeper` when there is one; the returned
/// ticket (null without a keeper) cancels the message when settled.
template <class Self, class... Ts>
deadline_ptr send_later(Self* self, deadline_keeper* keeper, caf::timespan delay, Ts&&... xs) {
  if (!keeper) {
    self->delayed_send(self, delay, std::forward<Ts>(xs)...);
    return nullptr;
  }
  return keeper->send_at(self->ctrl(), deadline_keeper::clock::now() + delay,
                         caf::make_message(std::forward<Ts>(xs)...));
}

} // namespace emporium::actors
