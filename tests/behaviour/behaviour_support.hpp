#pragma once
/// What the behaviour tests share: a plain Redis connection to plant and read keys, the part of
/// an issued token the database knows, its session cache key, and a freeze of a process that is
/// always undone.

#include "e2e/http_client.hpp"

#include <sys/types.h>

#include <string>
#include <vector>

namespace emporium::test {

/// One hiredis connection to the Redis at `url` (redis://host:port/db), for the test's own
/// commands. Every failure fails the test.
class redis_client {
 public:
  explicit redis_client(const std::string& url);
  ~redis_client();
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;

  /// Runs a command given as its words; the reply as text: a string or status as it is, an
  /// integer in decimal, nil as "(nil)", an error as "ERR: <message>".
  std::string command(const std::vector<std::string>& words);

  /// GET `key`, "(nil)" when absent.
  std::string get(const std::string& key) { return command({"GET", key}); }
  /// SET `key` to `value` for `ttl_s` seconds.
  void set(const std::string& key, const std::string& value, int ttl_s = 60);

 private:
  void* ctx_ = nullptr;
};

/// The pid of the redis-server behind `url`, as it reports it (INFO server).
pid_t redis_pid(const std::string& url);

/// The token as the database knows it: an issued token without its signature (".<hex>").
std::string stored_token(const std::string& presented);

/// The Redis key under which the server caches the session of `presented`.
std::string session_cache_key(const std::string& presented);

/// Milliseconds since the epoch, as the server writes session expiries.
long long epoch_ms();

/// SIGSTOP of one process, undone (SIGCONT) by the destructor or by thaw(), so that a failing
/// test never leaves it frozen.
class frozen_process {
 public:
  explicit frozen_process(pid_t pid);
  ~frozen_process();
  frozen_process(const frozen_process&) = delete;
  frozen_process& operator=(const frozen_process&) = delete;
  void thaw();

 private:
  pid_t pid_;
  bool frozen_ = false;
};

} // namespace emporium::test
