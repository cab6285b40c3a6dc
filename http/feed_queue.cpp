#include "http/feed_queue.hpp"

#include "http/problem.hpp"

namespace emporium::http {

void feed_queue::on_ready(std::function<void()> fn) {
  std::lock_guard<std::mutex> guard{mtx_};
  ready_ = std::move(fn);
}

bool feed_queue::push(feed_message m, const bool* live) {
  std::function<void()> tell;
  bool ok = true;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_)
      return false;
    if (live && !*live)
      return true;
    if (q_.size() >= max_) {
      overflowed_ = true;
      closed_ = true;
      q_.clear();
      tell = ready_;
      ok = false;
    } else {
      q_.push_back(std::move(m));
      if (!told_) {
        told_ = true;
        tell = ready_;
      }
    }
  }
  if (tell)
    tell();
  return ok;
}

bool feed_queue::retire(bool& live, std::optional<feed_message> last) {
  std::function<void()> tell;
  bool ok = true;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!live)
      return true;
    live = false;
    if (!last)
      return true;
    if (closed_) {
      ok = false;
    } else if (q_.size() >= max_) {
      overflowed_ = true;
      closed_ = true;
      q_.clear();
      tell = ready_;
      ok = false;
    } else {
      q_.push_back(std::move(*last));
      if (!told_) {
        told_ = true;
        tell = ready_;
      }
    }
  }
  if (tell)
    tell();
  return ok;
}

void feed_queue::take(std::deque<feed_message>& out) {
  std::lock_guard<std::mutex> guard{mtx_};
  told_ = false;
  for (auto& m : q_)
    out.push_back(std::move(m));
  q_.clear();
}

void feed_queue::close() {
  std::lock_guard<std::mutex> guard{mtx_};
  closed_ = true;
  q_.clear();
}

bool feed_queue::closed() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return closed_;
}

bool feed_queue::overflowed() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return overflowed_;
}

std::size_t feed_queue::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return q_.size();
}

// -- queue_sink -----------------------------------------------------------------------------------

bool queue_sink::deliver(const std::shared_ptr<const model::feed_event>& e) {
  return q_->push(feed_message::of(e), &live_);
}

void queue_sink::end(const failure& why) {
  feed_message m;
  m.k = feed_message::kind::ended;
  m.topic = topic_;
  m.status = status_of(why.code);
  m.text = why.detail.empty() ? "the subscription ended" : why.detail;
  q_->retire(live_, std::move(m));
}

bool queue_sink::acknowledge(std::string text) {
  return q_->push(feed_message::of_text(std::move(text)), &live_);
}

void queue_sink::refuse(int status, std::string detail) {
  feed_message m;
  m.k = feed_message::kind::failed;
  m.topic = topic_;
  m.status = status;
  m.text = std::move(detail);
  q_->retire(live_, std::move(m));
}

void queue_sink::retire(std::optional<feed_message> last) {
  q_->retire(live_, std::move(last));
}

} // namespace emporium::http
