#include "actors/caller.hpp"

#include <caf/actor_companion.hpp>

namespace emporium::actors {

caller::caller(caf::actor_system& sys, deadline_keeper& keeper) : keeper_(keeper) {
  // Hidden: the actor system does not wait for it at its end (it never runs, so it never
  // ends by itself); ~caller ends it.
  auto handle = sys.spawn<caf::actor_companion, caf::hidden>();
  self_ = caf::actor_cast<caf::strong_actor_ptr>(handle);
  companion_ = static_cast<caf::actor_companion*>(caf::actor_cast<caf::abstract_actor*>(handle));
  companion_->on_enqueue([this](caf::mailbox_element_ptr e) { receive(std::move(e)); });
}

caller::~caller() {
  // on_exit swaps the handler out under the companion's lock: an answer being delivered now
  // is waited for, and later ones find no handler.
  companion_->cleanup(caf::exit_reason::user_shutdown, nullptr);
}

void caller::stop() {
  std::unordered_map<std::uint64_t, call> dropped;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopped_ = true;
    dropped.swap(calls_);
  }
  for (auto& [id, c] : dropped)
    if (c.deadline)
      c.deadline->settle();
  // `dropped` goes here, outside the lock: its callbacks may hold the last reference to a
  // session.
}

std::size_t caller::pending() const {
  std::lock_guard<std::mutex> lk(mu_);
  return calls_.size();
}

void caller::send(caf::strong_actor_ptr target, caf::message msg, caf::timespan timeout,
                  handler on_answer) {
  if (!target) {
    // As CAF answers a request to an invalid handle.
    auto answer = caf::make_message(caf::make_error(caf::sec::invalid_argument));
    run_callback(on_answer, answer);
    return;
  }
  auto n = next_.fetch_add(1, std::memory_order_relaxed) + 1;
  auto id = caf::make_message_id(n);
  bool stopped = false;
  {
    // The keeper's thread sends the timeout outside its own lock, so it may wait for this one:
    // the call is in calls_ before its deadline can fire.
    std::lock_guard<std::mutex> lk(mu_);
    stopped = stopped_;
    if (!stopped)
      calls_.emplace(
        n, call{std::move(on_answer),
                keeper_.watch(self_, id.response_id(), deadline_keeper::clock::now() + timeout)});
  }
  if (stopped) {
    auto answer = caf::make_message(
      make_domain_error(errc::unavailable, "the server is stopping; retry shortly"));
    run_callback(on_answer, answer);
    return;
  }
  target->enqueue(caf::make_mailbox_element(self_, id, {}, std::move(msg)), nullptr);
}

void caller::receive(caf::mailbox_element_ptr e) {
  if (!e || !e->mid.is_response())
    return; // nothing but answers is sent here
  call c;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = calls_.find(e->mid.request_id().integer_value());
    if (it == calls_.end())
      return; // answered already: a timeout, then the late answer
    c = std::move(it->second);
    calls_.erase(it);
  }
  if (c.deadline)
    c.deadline->settle();
  auto answer = e->move_content_to_message();
  run_callback(c.on_answer, answer);
}

} // namespace emporium::actors
