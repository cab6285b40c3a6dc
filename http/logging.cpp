#include "http/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

namespace emporium::http::logging {

namespace {

thread_local std::string_view current_id;

std::shared_ptr<spdlog::logger>& access_logger() {
  static std::shared_ptr<spdlog::logger> logger;
  return logger;
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
  return nlohmann::json(std::string{s})
    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void setup(const std::string& level) {
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

  // Access lines bring their own members (already JSON); one fwrite per line, like the above.
  auto access_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto access_fmt = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  access_fmt->set_pattern(std::string{time_and_level} + ",%v}");
  access_sink->set_formatter(std::move(access_fmt));
  auto access = std::make_shared<spdlog::logger>("access", access_sink);
  access->set_level(lvl);
  access_logger() = access;
}

void flush() {
  if (auto logger = spdlog::default_logger())
    logger->flush();
  if (auto& access = access_logger())
    access->flush();
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

void access(const access_entry& e) {
  auto& logger = access_logger();
  if (!logger || !logger->should_log(spdlog::level::info))
    return;
  logger->info("{}", access_fields(e));
}

} // namespace emporium::http::logging
