#pragma once
/// A bounded queue of log entries written out by a thread of its own. Request threads hand an
/// entry over and go on; the queue's thread turns entries into lines and hands them to the sink
/// in batches, in the order they were handed over. At most `capacity` entries wait: an entry
/// that finds the queue full is dropped and counted, so an output that is slow or stalled (a
/// full disk, a pipe nobody reads, the kernel throttling a writer of dirty pages) never holds up
/// the thread that logs.
///
/// The queue's thread sleeps while the queue is empty; the first entry wakes it, and it then
/// waits up to `linger` for more before writing, so that one write carries many lines and only
/// the first entry of a batch costs its producer a wake-up. It writes at once when half the
/// queue is full or flush() asks.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace emporium::http::logging {

class log_queue {
 public:
  using clock = std::chrono::system_clock;
  struct entry {
    clock::time_point at;  ///< when it was logged
    std::string_view text; ///< what the formatter makes a line of
  };
  /// Appends the line for `e` (with its final '\n') to `out`. Runs on the queue's thread.
  using formatter = std::function<void(const entry& e, std::string& out)>;
  /// Writes a batch of whole lines. Runs on the queue's thread; may take as long as it likes.
  using sink = std::function<void(std::string_view lines)>;

  log_queue(std::size_t capacity, formatter format, sink out,
            std::chrono::milliseconds linger = std::chrono::milliseconds(20));
  /// Writes what waits, then stops the thread.
  ~log_queue();
  log_queue(const log_queue&) = delete;
  log_queue& operator=(const log_queue&) = delete;

  /// Hands `text` over, stamped `at`. Never waits for the sink: false, and the entry counted as
  /// dropped, when `capacity` entries wait already.
  bool push(clock::time_point at, std::string_view text);

  /// Returns once every entry accepted before the call has been handed to the sink.
  void flush();

  /// Changes the bound for the entries pushed from now on (at least 1).
  void set_capacity(std::size_t capacity);

  std::uint64_t dropped() const;
  std::uint64_t written() const; ///< entries handed to the sink
  std::size_t waiting() const;   ///< entries queued now (the batch being written not included)

 private:
  void run();

  const formatter format_;
  const sink sink_;
  const std::chrono::milliseconds linger_;
  mutable std::mutex mtx_;
  std::condition_variable wake_; ///< the queue's thread waits here
  std::condition_variable done_; ///< flush() waits here
  /// What waits, oldest first: the texts one after the other in one buffer (no allocation per
  /// entry, nothing freed by another thread than the one that allocated it).
  struct slot {
    clock::time_point at;
    std::size_t size;
  };
  struct pending {
    std::vector<slot> slots;
    std::string texts;
  };
  pending entries_;
  std::size_t capacity_;
  std::uint64_t accepted_ = 0; ///< entries ever accepted
  std::uint64_t written_ = 0;  ///< of which handed to the sink
  std::uint64_t dropped_ = 0;
  std::uint64_t flush_upto_ = 0; ///< accepted_ at the latest flush() call
  bool idle_ = false;            ///< the thread sleeps until the next entry
  bool stop_ = false;
  std::thread thread_;
};

} // namespace emporium::http::logging
