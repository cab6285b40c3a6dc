#include "actors/deadlines.hpp"

#include <pthread.h>

namespace emporium::actors {

deadline_keeper::deadline_keeper() : thread_([this] { run(); }) {}

deadline_keeper::~deadline_keeper() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

deadline_ptr deadline_keeper::watch(const caf::strong_actor_ptr& requester,
                                    caf::message_id response, clock::time_point due) {
  return add(std::make_shared<deadline_ticket>(due, caf::actor_cast<caf::weak_actor_ptr>(requester),
                                               response));
}

deadline_ptr deadline_keeper::send_at(const caf::strong_actor_ptr& receiver, clock::time_point due,
                                      caf::message content) {
  return add(std::make_shared<deadline_ticket>(due, caf::actor_cast<caf::weak_actor_ptr>(receiver),
                                               caf::make_message_id(), std::move(content)));
}

deadline_ptr deadline_keeper::add(deadline_ptr t) {
  bool sooner;
  {
    std::lock_guard<std::mutex> lk(mu_);
    incoming_.push_back(t);
    sooner = t->due() < next_wake_;
    if (sooner)
      next_wake_ = t->due(); // one wake-up for a burst of earlier deadlines, not one each
  }
  if (sooner)
    wake_.notify_one();
  return t;
}

void deadline_keeper::run() {
  pthread_setname_np(pthread_self(), "deadlines");
  std::vector<deadline_ptr> arrived;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (stopping_)
      return;
    arrived.swap(incoming_);
    lk.unlock();
    for (auto& t : arrived)
      if (!t->settled())
        due_.push(std::move(t));
    arrived.clear();
    auto now = clock::now();
    while (!due_.empty() && (due_.top()->settled() || due_.top()->due() <= now)) {
      auto& t = *due_.top();
      if (!t.settled()) {
        // As CAF's clock does (simple_actor_clock.cpp): a request's timeout arrives as its
        // response; an actor that has gone is not sent anything.
        if (auto to = caf::actor_cast<caf::strong_actor_ptr>(t.receiver_)) {
          if (t.content_.empty())
            to->get()->eq_impl(t.response_, nullptr, nullptr, caf::sec::request_timeout);
          else
            to->enqueue(nullptr, caf::make_message_id(), std::move(t.content_), nullptr);
          expired_.fetch_add(1, std::memory_order_relaxed);
        }
      }
      due_.pop();
    }
    lk.lock();
    // Settled tickets that are not yet due stay in the heap until they reach its top: they
    // cost memory for one timeout's length, never a wake-up.
    next_wake_ = due_.empty() ? clock::time_point::max() : due_.top()->due();
    if (incoming_.empty() && !stopping_) {
      if (next_wake_ == clock::time_point::max())
        wake_.wait(lk);
      else
        wake_.wait_until(lk, next_wake_);
    }
  }
}

} // namespace emporium::actors
