#include "persistence/breaker.hpp"

#include <spdlog/spdlog.h>

namespace emporium::persistence {

circuit_breaker::circuit_breaker(std::string name, int threshold,
                                 std::chrono::milliseconds open_for)
  : name_(std::move(name)), threshold_(threshold < 1 ? 1 : threshold), open_for_(open_for) {}

bool circuit_breaker::allow() {
  std::lock_guard<std::mutex> guard{mtx_};
  switch (state_) {
    case state::closed: return true;
    case state::open:
      if (clock::now() < retry_at_)
        return false;
      state_ = state::half_open;
      probing_ = true;
      return true;
    case state::half_open:
      if (probing_)
        return false;
      probing_ = true;
      return true;
  }
  return false;
}

void circuit_breaker::on_success() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (state_ != state::closed)
    spdlog::info("{} is reachable again: circuit closed", name_);
  state_ = state::closed;
  failures_ = 0;
  probing_ = false;
}

void circuit_breaker::on_failure() {
  std::lock_guard<std::mutex> guard{mtx_};
  probing_ = false;
  if (state_ == state::half_open || ++failures_ >= threshold_) {
    if (state_ != state::open) {
      ++opened_;
      spdlog::warn("{} is failing: circuit open for {} ms", name_, open_for_.count());
    }
    state_ = state::open;
    retry_at_ = clock::now() + open_for_;
  }
}

circuit_breaker::state circuit_breaker::current() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return state_;
}

std::int64_t circuit_breaker::times_opened() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return opened_;
}

const char* to_string(circuit_breaker::state s) {
  switch (s) {
    case circuit_breaker::state::closed: return "closed";
    case circuit_breaker::state::open: return "open";
    case circuit_breaker::state::half_open: return "half_open";
  }
  return "closed";
}

} // namespace emporium::persistence
