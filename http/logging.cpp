#include "http/logging.hpp"

#include "http/log_queue.hpp"
#include "http/metrics.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>

namespace emporium::http::logging {

namespace {

thread_local std::string_view current_id;

/// Whether access lines are written (the level is info or below).
std::atomic<bool> access_on{false};

/// The access log's queue: made by the first setup() and kept to the end of the process (a
/// request thread may log while main returns), so it is never destroyed.
log_queue* access_queue = nullptr;

/// Writes all of `lines` to stderr, whatever the descriptor takes at a time. An error (stderr
/// closed, a pipe without reader) loses the batch: a log must not stop the server.
void write_stderr(std::string_view lines) {
  while (!lines.empty()) {
    auto n = ::write(STDERR_FILENO, lines.data(), lines.size());
    if (n > 0) {
      lines.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      usleep(1000); // a non-blocking pipe that is full: the queue's thread may wait
    } else {
      return;
    }
  }
}

/// The access line of `e`: the same members in the same order as the other loggers' lines
/// (time in UTC with microseconds, level, logger), then the access fields.
class access_formatter {
 public:
  void operator()(const log_queue::entry& e, std::string& out) {
    auto since = e.at.time_since_epoch();
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(since - secs).count();
    if (secs.count() != second_) {
      second_ = secs.count();
      std::time_t t = static_cast<std::time_t>(second_);
      std::tm tm{};
      gmtime_r(&t, &tm);
      std::strftime(stamp_, sizeof stamp_, "%Y-%m-%dT%H:%M:%S", &tm);
    }
    char head[96];
    int n = std::snprintf(head, sizeof head,
                          R"({"time":"%s.%06lldZ","level":"info","logger":"access",)", stamp_,
                          static_cast<long long>(micros));
    out.append(head, static_cast<std::size_t>(n));
    out += e.text;
    out += "}\n";
  }

 private:
  std::int64_t second_ = -1;
  char stamp_[32] = {};
};

void register_metrics() {
  metrics::global().add_collector([](metrics::writer& w) {
    auto st = access_queue_stats();
    w.header("emporium_log_dropped_total",
             "Access log lines dropped because the log's queue was full (log.access_queue_lines)",
             metrics::kind::counter);
    w.sample("emporium_log_dropped_total", {}, static_cast<double>(st.dropped));
    w.header("emporium_log_written_total", "Access log lines written", metrics::kind::counter);
    w.sample("emporium_log_written_total", {}, static_cast<double>(st.written));
    w.header("emporium_log_queued_lines", "Access log lines waiting to be written",
             metrics::kind::gauge);
    w.sample("emporium_log_queued_lines", {}, static_cast<double>(st.waiting));
  });
}

void append(spdlog::memory_buf_t& dest, std::string_view s) {
  dest.append(s.data(), s.data() + s.size());
}

/// `%*`: the message as a JSON string.
class json_message_flag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    append(dest, json_quote(std::string_view{msg.payload.data(), msg.payload.size()}));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<json_message_flag>();
  }
};

/// `%&`: `,"request_id":"..."` inside a request's scope, else nothing.
class request_id_flag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    if (current_id.empty())
      return;
    append(dest, ",\"request_id\":");
    append(dest, json_quote(current_id));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<request_id_flag>();
  }
};

constexpr const char* time_and_level =
  R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n")";

} // namespace

std::string json_quote(std::string_view s) {
  // Printable ASCII other than the quote and the backslash needs no escape: the common case
  // (ids, methods, routes, addresses) without building a JSON value.
  bool plain = true;
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  if (plain) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    out.append(s.data(), s.size());
    out += '"';
    return out;
  }
  return nlohmann::json(std::string{s})
    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void setup(const std::string& level, std::size_t access_queue_lines) {
  auto lvl = spdlog::level::from_str(level);

  auto main_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto main_fmt = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  main_fmt->add_flag<json_message_flag>('*').add_flag<request_id_flag>('&');
  main_fmt->set_pattern(std::string{time_and_level} + R"(,"msg":%*%&})");
  main_sink->set_formatter(std::move(main_fmt));
  auto logger = std::make_shared<spdlog::logger>("emporium", main_sink);
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);

  // Access lines go through the queue: the request's thread formats its fields, the queue's
  // thread the rest, and writes them in batches.
  static std::once_flag once;
  std::call_once(once, [access_queue_lines] {
    access_queue = new log_queue(access_queue_lines, access_formatter{}, write_stderr);
    register_metrics();
  });
  access_queue->set_capacity(access_queue_lines);
  access_on.store(lvl <= spdlog::level::info, std::memory_order_relaxed);
}

void flush() {
  if (auto logger = spdlog::default_logger())
    logger->flush();
  if (access_queue)
    access_queue->flush();
}

queue_stats access_queue_stats() {
  if (!access_queue)
    return {};
  return {access_queue->dropped(), access_queue->written(), access_queue->waiting()};
}

request_scope::request_scope(std::string_view id) : previous_(current_id) {
  current_id = id;
}

request_scope::~request_scope() {
  current_id = previous_;
}

std::string_view current_request_id() {
  return current_id;
}

std::string access_fields(const access_entry& e) {
  char duration[32];
  std::snprintf(duration, sizeof duration, "%.3f", e.duration_ms);
  std::string out;
  out.reserve(256);
  out += "\"request_id\":";
  out += json_quote(e.request_id);
  out += ",\"method\":";
  out += json_quote(e.method);
  out += ",\"route\":";
  out += json_quote(e.route);
  out += ",\"status\":";
  out += std::to_string(e.status);
  out += ",\"duration_ms\":";
  out += duration;
  out += ",\"bytes\":";
  out += std::to_string(e.bytes);
  out += ",\"client\":";
  out += json_quote(e.client);
  if (!e.route_class.empty()) {
    out += ",\"class\":";
    out += json_quote(e.route_class);
  }
  if (e.rate_limited_locally)
    out += ",\"rate_limit_fallback\":true";
  return out;
}

std::string access_line(std::chrono::system_clock::time_point at, std::string_view fields) {
  std::string out;
  access_formatter{}(log_queue::entry{at, fields}, out);
  return out;
}

void access(const access_entry& e) {
  if (!access_on.load(std::memory_order_relaxed) || !access_queue)
    return;
  access_queue->push(log_queue::clock::now(), access_fields(e));
}

} // namespace emporium::http::logging
