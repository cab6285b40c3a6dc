#include "behaviour/behaviour_support.hpp"

#include "core/ids.hpp"

#include <hiredis/hiredis.h>
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>

namespace emporium::test {

namespace {

redisContext* as_ctx(void* p) {
  return static_cast<redisContext*>(p);
}

} // namespace

redis_client::redis_client(const std::string& url) {
  // redis://host:port/db, as the test services and redis_process give it.
  auto rest = url.substr(url.find("://") + 3);
  auto colon = rest.find(':');
  auto slash = rest.find('/');
  REQUIRE(colon != std::string::npos);
  auto host = rest.substr(0, colon);
  auto port = std::stoi(
    rest.substr(colon + 1, slash == std::string::npos ? std::string::npos : slash - colon - 1));
  timeval tv{2, 0};
  auto* c = redisConnectWithTimeout(host.c_str(), port, tv);
  INFO("connecting to " << url << ": " << (c ? c->errstr : "no context"));
  REQUIRE((c && !c->err));
  redisSetTimeout(c, tv);
  ctx_ = c;
  if (slash != std::string::npos && slash + 1 < rest.size() && rest.substr(slash + 1) != "0")
    REQUIRE(command({"SELECT", rest.substr(slash + 1)}) == "OK");
}

redis_client::~redis_client() {
  if (ctx_)
    redisFree(as_ctx(ctx_));
}

std::string redis_client::command(const std::vector<std::string>& words) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& w : words) {
    argv.push_back(w.data());
    lens.push_back(w.size());
  }
  auto* r = static_cast<redisReply*>(
    redisCommandArgv(as_ctx(ctx_), static_cast<int>(argv.size()), argv.data(), lens.data()));
  INFO("redis " << words.at(0) << ": " << as_ctx(ctx_)->errstr);
  REQUIRE(r != nullptr);
  std::string out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: out.assign(r->str, r->len); break;
    case REDIS_REPLY_INTEGER: out = std::to_string(r->integer); break;
    case REDIS_REPLY_NIL: out = "(nil)"; break;
    case REDIS_REPLY_ERROR: out = "ERR: " + std::string(r->str, r->len); break;
    case REDIS_REPLY_ARRAY:
      for (size_t i = 0; i < r->elements; ++i) {
        auto* e = r->element[i];
        out += (i ? " " : "")
               + (e->type == REDIS_REPLY_INTEGER ? std::to_string(e->integer)
                                                 : std::string(e->str ? e->str : "", e->len));
      }
      break;
    default: out = "?"; break;
  }
  freeReplyObject(r);
  return out;
}

void redis_client::set(const std::string& key, const std::string& value, int ttl_s) {
  REQUIRE(command({"SET", key, value, "EX", std::to_string(ttl_s)}) == "OK");
}

pid_t redis_pid(const std::string& url) {
  redis_client r{url};
  auto info = r.command({"INFO", "server"});
  auto at = info.find("process_id:");
  REQUIRE(at != std::string::npos);
  return static_cast<pid_t>(std::stol(info.substr(at + 11)));
}

std::string stored_token(const std::string& presented) {
  return presented.substr(0, presented.rfind('.'));
}

std::string session_cache_key(const std::string& presented) {
  return "emporium:session:" + emporium::core::sha256_hex(stored_token(presented));
}

long long epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

frozen_process::frozen_process(pid_t pid) : pid_(pid) {
  REQUIRE(pid_ > 0);
  REQUIRE(::kill(pid_, SIGSTOP) == 0);
  frozen_ = true;
}

frozen_process::~frozen_process() {
  thaw();
}

void frozen_process::thaw() {
  if (frozen_)
    ::kill(pid_, SIGCONT);
  frozen_ = false;
}

} // namespace emporium::test
