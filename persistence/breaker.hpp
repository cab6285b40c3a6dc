#pragma once
/// A circuit breaker: closed → open after `threshold` consecutive failures → after `open_for`,
/// half-open: one probe call goes ahead → closed on its success, open again on its failure.
/// While open, callers fail at once instead of each paying a timeout against a dead dependency.
/// Thread-safe: shared by every worker that talks to the same dependency.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace emporium::persistence {

class circuit_breaker {
 public:
  enum class state : int { closed = 0, open = 1, half_open = 2 };

  circuit_breaker(std::string name, int threshold, std::chrono::milliseconds open_for);

  /// True when a call may go ahead now (in half-open: only the one probe).
  bool allow();
  void on_success();
  void on_failure();

  state current() const;
  /// How often the breaker opened since start.
  std::int64_t times_opened() const;
  const std::string& name() const { return name_; }

 private:
  using clock = std::chrono::steady_clock;
  std::string name_;
  int threshold_;
  std::chrono::milliseconds open_for_;
  mutable std::mutex mtx_;
  state state_ = state::closed;
  int failures_ = 0;
  bool probing_ = false;
  clock::time_point retry_at_{};
  std::int64_t opened_ = 0;
};

const char* to_string(circuit_breaker::state s);

} // namespace emporium::persistence
