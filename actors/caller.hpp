#pragma once
/// How a thread that is not an actor (an Asio thread of the HTTP front end) asks an actor and
/// gets the answer through a callback, with no actor of its own in between.
///
/// The request goes straight into the target's mailbox, sent by one caf::actor_companion. A
/// companion is never scheduled: whoever enqueues into it runs its handler on their own
/// thread. So the answer runs the callback on the thread of the actor that answered, in the
/// same turn; before, a "bridge" actor sent the request and received the answer, two more
/// turns of CAF's scheduler and often two more thread wake-ups for every HTTP request.
///
/// Deadlines are kept by the node's deadline_keeper, which sends the companion CAF's own
/// request_timeout error as the answer. An answer after that finds nothing and is dropped.

#include "actors/deadlines.hpp"
#include "actors/types.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

namespace emporium::actors {

/// Runs a callback handed to the runtime (runtime.hpp: it runs exactly once, on an actor
/// thread): an exception from it is logged, never passed to the thread that runs it.
template <class F, class... Args>
void run_callback(const F& f, Args&&... args) {
  try {
    f(std::forward<Args>(args)...);
  } catch (const std::exception& e) {
    spdlog::error("a runtime callback threw: {}", e.what());
  }
}

class caller {
 public:
  caller(caf::actor_system& sys, deadline_keeper& keeper);
  ~caller(); ///< answers nothing more: calls not answered by now are dropped

  caller(const caller&) = delete;
  caller& operator=(const caller&) = delete;

  /// Sends `msg` to `target` and hands its answer, the error it was answered with, or a
  /// timeout after `timeout`, to `on_answer`: exactly once, on the thread that delivers it.
  /// The answer is expected to hold one `T`; anything else is answered as an internal error.
  /// An exception from `on_answer` is logged, never passed to the thread that answered.
  template <class T, class Handle, class Msg>
  void ask(const Handle& target, Msg msg, caf::timespan timeout,
           std::function<void(result<T>)> on_answer) {
    send(caf::actor_cast<caf::strong_actor_ptr>(target), caf::make_message(std::move(msg)), timeout,
         [cb = std::move(on_answer)](caf::message& answer) { cb(decode<T>(answer)); });
  }

  /// Calls sent and not answered yet; for tests.
  std::size_t pending() const;

  /// The runtime stops: the calls not answered yet are dropped without running their
  /// callbacks, as they were when the actors that made them stopped, and so are answers and
  /// deadlines that come later (an HTTP callback must not run once the server is gone). A call
  /// made after this is answered at once: unavailable.
  void stop();

 private:
  using handler = std::function<void(caf::message&)>;
  struct call {
    handler on_answer;
    deadline_ptr deadline;
  };

  template <class T>
  static result<T> decode(caf::message& answer) {
    if (answer.match_elements<T>())
      return result<T>{std::move(answer.get_mutable_as<T>(0))};
    if (answer.match_elements<caf::error>())
      return result<T>{to_failure(answer.get_as<caf::error>(0))};
    return result<T>{failure{errc::internal, "an actor answered with an unexpected type", {}}};
  }

  void send(caf::strong_actor_ptr target, caf::message msg, caf::timespan timeout,
            handler on_answer);
  /// The companion's enqueue handler: runs the call that `e` answers, if it still waits.
  void receive(caf::mailbox_element_ptr e);

  deadline_keeper& keeper_;
  caf::actor_companion* companion_ = nullptr; ///< owned through self_
  caf::strong_actor_ptr self_;
  std::atomic<std::uint64_t> next_{0};
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, call> calls_; ///< by request id; guarded by mu_
  bool stopped_ = false;                          ///< guarded by mu_
};

} // namespace emporium::actors
