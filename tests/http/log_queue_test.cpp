// The access log's queue: bounded, counted drops, never waits for its output, lines in order.

#include "http/log_queue.hpp"
#include "http/logging.hpp"
#include "http/metrics.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <condition_variable>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using emporium::http::logging::log_queue;
namespace logging = emporium::http::logging;
using Catch::Contains;

namespace {

void plain_line(const log_queue::entry& e, std::string& out) {
  out += e.text;
  out += '\n';
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

} // namespace

TEST_CASE(
  "the access log queue drops and counts lines while its output is stalled, and never "
  "waits for it",
  "[logging]") {
  std::mutex mtx;
  std::condition_variable cv;
  bool writing = false;
  bool release = false;
  std::string written;
  log_queue q{4, plain_line,
              [&](std::string_view lines) {
                std::unique_lock<std::mutex> lock{mtx};
                writing = true;
                cv.notify_all();
                cv.wait(lock, [&] { return release; });
                written.append(lines);
              },
              std::chrono::milliseconds(1)};
  auto now = log_queue::clock::now();

  // The first line is taken by the queue's thread, whose write then hangs.
  REQUIRE(q.push(now, "line 0"));
  {
    std::unique_lock<std::mutex> lock{mtx};
    cv.wait(lock, [&] { return writing; });
  }
  // Four more fit behind the stalled write; the rest are refused at once and counted.
  std::vector<bool> accepted;
  for (int i = 1; i <= 10; ++i)
    accepted.push_back(q.push(now, "line " + std::to_string(i)));
  CHECK(accepted
        == std::vector<bool>{true, true, true, true, false, false, false, false, false, false});
  CHECK(q.dropped() == 6);
  CHECK(q.waiting() == 4);
  CHECK(q.written() == 0);

  // The output comes back: what was accepted is written, in order; the queue takes lines again.
  {
    std::lock_guard<std::mutex> lock{mtx};
    release = true;
  }
  cv.notify_all();
  q.flush();
  CHECK(q.push(now, "line 11"));
  q.flush();
  CHECK(split_lines(written)
        == std::vector<std::string>{"line 0", "line 1", "line 2", "line 3", "line 4", "line 11"});
  CHECK(q.written() == 6);
  CHECK(q.dropped() == 6);
  CHECK(q.waiting() == 0);
}

TEST_CASE("the access log queue writes every line in the order each thread logged it",
          "[logging]") {
  std::string written; // touched by the queue's thread only, read after flush()
  int batches = 0;
  log_queue q{1 << 20, plain_line, [&](std::string_view lines) {
                written.append(lines);
                ++batches;
              }};
  constexpr int per_thread = 20'000;
  auto produce = [&q](char name) {
    for (int i = 0; i < per_thread; ++i)
      q.push(log_queue::clock::now(), std::string(1, name) + " " + std::to_string(i));
  };
  std::thread a{produce, 'a'};
  std::thread b{produce, 'b'};
  a.join();
  b.join();
  q.flush();
  CHECK(q.dropped() == 0);
  CHECK(q.written() == 2 * per_thread);
  int next_a = 0, next_b = 0;
  bool in_order = true;
  for (const auto& line : split_lines(written)) {
    int& next = line[0] == 'a' ? next_a : next_b;
    if (line.substr(2) != std::to_string(next))
      in_order = false;
    ++next;
  }
  CHECK(in_order);
  CHECK(next_a == per_thread);
  CHECK(next_b == per_thread);
  CHECK(batches < 2 * per_thread); // lines share writes
}

TEST_CASE("a log queue being destroyed writes what it still holds first", "[logging]") {
  std::string written;
  {
    log_queue q{1000, plain_line, [&](std::string_view lines) { written.append(lines); },
                std::chrono::seconds(60)};
    for (int i = 0; i < 100; ++i)
      q.push(log_queue::clock::now(), std::to_string(i));
  }
  auto lines = split_lines(written);
  REQUIRE(lines.size() == 100);
  CHECK(lines.front() == "0");
  CHECK(lines.back() == "99");
}

TEST_CASE(
  "access lines are JSON objects with time, level and logger, and the log's queue is in "
  "the metrics",
  "[logging]") {
  logging::access_entry e;
  e.request_id = "req_1";
  e.method = "GET";
  e.route = "/products";
  e.status = 200;
  e.client = "127.0.0.1";
  auto at = std::chrono::system_clock::time_point{std::chrono::seconds(1'700'000'000)}
            + std::chrono::microseconds(1234);
  auto line = logging::access_line(at, logging::access_fields(e));
  REQUIRE(line.back() == '\n');
  auto j = nlohmann::json::parse(line);
  CHECK(j["time"] == "2023-11-14T22:13:20.001234Z");
  CHECK(j["level"] == "info");
  CHECK(j["logger"] == "access");
  CHECK(j["route"] == "/products");
  CHECK(j["status"] == 200);

  // Quoting takes the plain path for printable ASCII and escapes everything else.
  CHECK(logging::json_quote("GET /a") == "\"GET /a\"");
  CHECK(nlohmann::json::parse(logging::json_quote("a\"b\\c\n")) == "a\"b\\c\n");

  logging::setup("warn", 64);
  auto text = emporium::http::metrics::global().render();
  CHECK_THAT(text, Contains("# TYPE emporium_log_dropped_total counter\n"));
  CHECK_THAT(text, Contains("\nemporium_log_dropped_total 0\n"));
  CHECK_THAT(text, Contains("\nemporium_log_queued_lines 0\n"));
}
