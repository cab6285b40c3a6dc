// emporium: the one binary. Reads configuration, prepares the database, starts the actor runtime
// and the HTTP server, and shuts both down cleanly on SIGTERM or SIGINT.

#include "actors/runtime.hpp"
#include "config/settings.hpp"
#include "http/logging.hpp"
#include "http/routes.hpp"
#include "http/server.hpp"
#include "persistence/credentials.hpp"
#include "persistence/migrations.hpp"
#include "persistence/seed.hpp"

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

namespace {

using namespace emporium;

constexpr const char* version_text = "emporium 0.1.0";

/// At exit, up to this many active entity actors are stopped one by one (a few tens of
/// microseconds each, so that a sanitizer build checks for leaks at the end); with more, the
/// process ends once everything that may write has stopped (runtime::stop_for_exit).
constexpr std::int64_t entities_torn_down_at_exit = 10'000;

struct options {
  std::string config_file;
  std::vector<std::string> overrides; ///< section.key=value
  std::optional<std::string> host;
  std::optional<int> port;
  std::optional<std::string> log_level;
};

config::settings load_settings(const options& o) {
  config::settings s;
  if (!o.config_file.empty())
    config::apply_toml_file(s, o.config_file);
  config::apply_environment(s, config::process_environment());
  for (const auto& kv : o.overrides) {
    auto eq = kv.find('=');
    if (eq == std::string::npos)
      throw config::config_error("config: --set expects section.key=value, got '" + kv + "'");
    config::apply_override(s, kv.substr(0, eq), kv.substr(eq + 1));
  }
  if (o.host)
    config::apply_override(s, "http.host", *o.host);
  if (o.port)
    config::apply_override(s, "http.port", std::to_string(*o.port));
  if (o.log_level)
    config::apply_override(s, "log.level", *o.log_level);
  config::validate(s);
  return s;
}

/// JSON lines on stderr, one object per line (http/logging.hpp), at log.level.
void setup_logging(const config::settings& s) {
  http::logging::setup(s.log.level, static_cast<std::size_t>(s.log.access_queue_lines));
}

persistence::pg_session open_session(const config::settings& s) {
  return persistence::pg_session{persistence::pg_options{
    s.postgres.url, s.postgres.connect_timeout_ms, s.postgres.statement_timeout_ms}};
}

/// Start-up waits a bounded time for PostgreSQL (it may be starting alongside us).
void wait_for_database(persistence::pg_session& pg, int seconds) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    try {
      pg.connection();
      return;
    } catch (const std::exception&) {
      if (std::chrono::steady_clock::now() >= until)
        throw std::runtime_error("PostgreSQL is not reachable (postgres.url); gave up after "
                                 + std::to_string(seconds) + " s");
      spdlog::warn("waiting for PostgreSQL...");
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
}

int migrate_command(const config::settings& s) {
  auto pg = open_session(s);
  wait_for_database(pg, 30);
  auto applied = persistence::migrate(pg);
  std::cout << "schema at version " << persistence::schema_version(pg) << " (" << applied.size()
            << " migration(s) applied now)\n";
  return 0;
}

int seed_command(const config::settings& s, std::int64_t products, bool if_empty) {
  auto pg = open_session(s);
  wait_for_database(pg, 30);
  persistence::migrate(pg);
  auto t0 = std::chrono::steady_clock::now();
  auto n = persistence::seed_catalog(pg, persistence::seed_options{products, if_empty, 42});
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now()
                                                                  - t0)
              .count();
  if (n == 0)
    std::cout << "catalog not empty; nothing seeded\n";
  else
    std::cout << "seeded " << n << " products in " << ms << " ms\n";
  return 0;
}

int serve_command(config::settings s, bool no_migrate) {
  // Signals are taken by one thread with sigwait; every thread started from here on inherits
  // the blocked mask, so no CAF or Asio thread is interrupted by them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  // Before any descriptor is opened: http.max_connections is derived from the raised limit.
  auto files = http::raise_open_files_limit();
  if (files.soft != files.before)
    spdlog::info("open-files limit raised from {} to {}", files.before, files.soft);

  std::string admin_hash;
  {
    auto pg = open_session(s);
    wait_for_database(pg, 30);
    if (!no_migrate) {
      auto applied = persistence::migrate(pg);
      if (!applied.empty())
        spdlog::info("applied {} migration(s)", applied.size());
    }
    auto key = persistence::ensure_admin_key(pg, s.auth.admin_key);
    admin_hash = key.key_hash;
    if (key.generated) {
      // Shown once, on the operator's terminal, never through the logger.
      std::cout << "Generated the admin key (shown only this once; only its hash is stored):\n  "
                << *key.generated << "\n"
                << std::flush;
    }
  }

  if (s.rate_limit.mode == "local" && !s.cluster.peers.empty())
    spdlog::warn(
      "rate_limit.mode is local on a cluster of {} nodes: each node admits the whole "
      "quota; set rate_limit.mode = \"redis\" to share it",
      s.cluster.peers.size() + 1);

  actors::runtime runtime{s};
  s.auth.admin_key_hash = admin_hash;
  http::app app{runtime, s};
  auto routes = http::make_router(app);
  http::server server{s, routes, http::session_verifier(runtime)};
  server.start();
  spdlog::info("listening on http://{}:{} (rate limit: {} mode)", s.http.host, server.port(),
               s.rate_limit.mode);

  // The first SIGTERM or SIGINT drains (http.drain_timeout_ms); a second one cuts it short.
  std::atomic<bool> finished{false};
  std::thread signals{[&server, &finished, sigs] {
    for (int count = 0;; ++count) {
      int sig = 0;
      sigwait(&sigs, &sig);
      if (finished.load())
        return;
      const char* name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
      if (count == 0) {
        spdlog::info("received {}: no longer accepting, finishing in-flight requests", name);
        server.stop();
      } else {
        spdlog::warn("received {} again: stopping now", name);
        server.stop(0);
      }
    }
  }};
  server.run();
  if (!server.drained_cleanly())
    spdlog::warn("some connections were cut at the drain timeout");
  // Nothing is accepted or answered any more: stop the actors (they may still be finishing
  // work of requests cut at the drain timeout), then flush the logs.
  const bool torn_down = runtime.stop_for_exit(entities_torn_down_at_exit);
  spdlog::info("stopped");
  // Flushed, not shut down: destructors still to run may log.
  http::logging::flush();
  if (!torn_down) {
    // Every worker has finished and stopped; what is left is the entity actors, each holding a
    // copy of committed state (or, on a cluster node, CAF's own actors). The process ends
    // without stopping them one by one.
#ifdef __SANITIZE_ADDRESS__
    // The leak check that exit would have run, now: what the actor system still holds is
    // reachable and not reported; memory of ours that nothing points to is.
    __lsan_do_leak_check();
#endif
    std::fflush(nullptr);
    std::_Exit(0);
  }
  // Wake the signal thread (it is waiting, unless the server stopped without a signal).
  finished.store(true);
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Emporium: an e-commerce backend on actors"};
  cli.require_subcommand(1);
  options o;
  cli.add_option("-c,--config", o.config_file, "TOML configuration file")->check(CLI::ExistingFile);
  cli.add_option("--set", o.overrides, "override one setting: section.key=value (repeatable)");
  cli.add_option("--host", o.host, "http.host");
  cli.add_option("--port", o.port, "http.port");
  cli.add_option("--log-level", o.log_level, "log.level");

  auto* serve = cli.add_subcommand("serve", "serve the HTTP API");
  bool no_migrate = false;
  serve->add_flag("--no-migrate", no_migrate, "do not apply pending migrations at start");
  auto* migrate = cli.add_subcommand("migrate", "apply pending database migrations");
  auto* seed = cli.add_subcommand("seed", "load a demo catalog");
  std::int64_t products = 1000;
  bool if_empty = false;
  seed->add_option("--products", products, "how many products")->check(CLI::Range(1, 10'000'000));
  seed->add_flag("--if-empty", if_empty, "only when the catalog has no products");
  auto* version = cli.add_subcommand("version", "print the version");
  cli.fallthrough();

  CLI11_PARSE(cli, argc, argv);

  if (*version) {
    std::cout << version_text << "\n";
    return 0;
  }
  config::settings s;
  try {
    s = load_settings(o);
  } catch (const config::config_error& e) {
    std::cerr << "emporium: " << e.what() << "\n";
    return 2;
  }
  setup_logging(s);
  try {
    if (*migrate)
      return migrate_command(s);
    if (*seed)
      return seed_command(s, products, if_empty);
    if (*serve)
      return serve_command(s, no_migrate);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    spdlog::shutdown();
    return 1;
  }
  return 0;
}
