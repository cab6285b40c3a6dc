#include "http/log_queue.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>

namespace emporium::http::logging {

log_queue::log_queue(std::size_t capacity, formatter format, sink out,
                     std::chrono::milliseconds linger)
  : format_(std::move(format)),
    sink_(std::move(out)),
    linger_(linger),
    capacity_(std::max<std::size_t>(1, capacity)) {
  thread_ = std::thread{[this] { run(); }};
}

log_queue::~log_queue() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool log_queue::push(clock::time_point at, std::string_view text) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (entries_.slots.size() >= capacity_) {
      ++dropped_;
      return false;
    }
    entries_.slots.push_back(slot{at, text.size()});
    entries_.texts.append(text.data(), text.size());
    ++accepted_;
    // The thread sleeps only while the queue is empty; once woken it lingers by itself and
    // needs a nudge only when half the queue is full.
    if (idle_) {
      idle_ = false;
      wake = true;
    } else if (entries_.slots.size() == std::max<std::size_t>(1, capacity_ / 2)) {
      wake = true;
    }
  }
  if (wake)
    wake_.notify_one();
  return true;
}

void log_queue::flush() {
  std::unique_lock<std::mutex> lock{mtx_};
  auto upto = accepted_;
  flush_upto_ = std::max(flush_upto_, upto);
  wake_.notify_one(); // an idle thread goes back to sleep when nothing waits
  done_.wait(lock, [&] { return written_ >= upto; });
}

void log_queue::set_capacity(std::size_t capacity) {
  std::lock_guard<std::mutex> guard{mtx_};
  capacity_ = std::max<std::size_t>(1, capacity);
}

std::uint64_t log_queue::dropped() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return dropped_;
}

std::uint64_t log_queue::written() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return written_;
}

std::size_t log_queue::waiting() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return entries_.slots.size();
}

void log_queue::run() {
  // Asynchronous signals are for the threads that wait for them (the server's signal thread):
  // this thread may be started before the process blocks them.
  sigset_t async;
  sigfillset(&async);
  for (int sync : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS})
    sigdelset(&async, sync);
  pthread_sigmask(SIG_BLOCK, &async, nullptr);

  pending batch;
  std::string lines;
  std::unique_lock<std::mutex> lock{mtx_};
  for (;;) {
    if (entries_.slots.empty()) {
      if (stop_)
        return;
      idle_ = true;
      wake_.wait(lock, [&] { return stop_ || !entries_.slots.empty() || flush_upto_ > written_; });
      idle_ = false;
      continue;
    }
    // Something waits: give it `linger` to become a batch, unless someone is waiting for it.
    auto urgent = [&] {
      return stop_ || flush_upto_ > written_
             || entries_.slots.size() >= std::max<std::size_t>(1, capacity_ / 2);
    };
    if (!urgent())
      wake_.wait_for(lock, linger_, urgent);
    std::swap(batch, entries_);
    lock.unlock();
    lines.clear();
    std::size_t offset = 0;
    for (const auto& s : batch.slots) {
      format_(entry{s.at, std::string_view{batch.texts}.substr(offset, s.size)}, lines);
      offset += s.size;
    }
    if (!lines.empty())
      sink_(lines);
    auto n = batch.slots.size();
    batch.slots.clear();
    batch.texts.clear();
    // Keep the buffers of an ordinary batch, not those of a burst.
    if (lines.capacity() > (std::size_t{1} << 20)) {
      std::string{}.swap(lines);
      batch = pending{};
    }
    lock.lock();
    written_ += n;
    done_.notify_all();
  }
}

} // namespace emporium::http::logging
