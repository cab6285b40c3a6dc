#pragma once
/// Waiting in tests for what happens asynchronously (a write reaching PostgreSQL, a log line
/// written by its own thread, a sweep): poll a condition until it holds or a time limit passes.

#include <chrono>
#include <thread>

namespace emporium::test {

/// Calls `holds` every `poll` until it returns true or `limit` has passed; whether it held (it is
/// called once more at the limit, so a condition that became true just then counts).
template <class Pred>
bool eventually(Pred holds, std::chrono::milliseconds limit = std::chrono::seconds(5),
                std::chrono::milliseconds poll = std::chrono::milliseconds(20)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!holds()) {
    if (std::chrono::steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

} // namespace emporium::test
