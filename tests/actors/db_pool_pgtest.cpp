// The database workers' retry loop (actors/db_pool.cpp), the one production runs: a job whose
// connection was lost mid-transaction runs again on a fresh one with exactly what it captured,
// an in-doubt COMMIT never runs again, serialization failures are retried a bounded number of
// times, other errors are not retried, and a job that expired in its queue never runs.

#include "actors/db_pool.hpp"
#include "core/secret.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using namespace emporium;
using namespace emporium::actors;

struct pool_fixture {
  config::settings settings = test::test_settings();
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<db_pool> pool;

  pool_fixture() {
    register_types(cfg);
    cfg.set("logger.verbosity", caf::atom("quiet"));
    sys = std::make_unique<caf::actor_system>(cfg);
    pool = std::make_unique<db_pool>(*sys, settings, 1);
  }
  ~pool_fixture() {
    pool->stop();
    sys->await_all_actors_done();
  }

  /// Makes the worker open its connection, as it has after its first job: only a connection
  /// that was open before a job is retried when it breaks (one that cannot even be opened means
  /// PostgreSQL is down, and the job fails fast with 503).
  void warm() {
    REQUIRE(run<bool>(make_job(
      [](persistence::backend& b) -> result<bool> {
        pqxx::read_transaction tx{b.pg.connection()};
        tx.exec("SELECT 1");
        return true;
      },
      std::chrono::seconds(20))));
  }

  /// Runs `job` on the pool's worker and waits for its answer.
  template <class T>
  result<T> run(db_job job) {
    caf::scoped_actor self{*sys};
    result<T> out{errc::internal, "no answer"};
    self->request(pool->any(), std::chrono::seconds(30), std::move(job))
      .receive([&](T& x) { out = std::move(x); }, [&](caf::error& e) { out = to_failure(e); });
    return out;
  }
};

/// Ends the transaction's own PostgreSQL session from the server side, as a restart would.
void lose_connection(pqxx::transaction_base& tx) {
  tx.exec("SELECT pg_terminate_backend(pg_backend_pid())");
}

} // namespace

TEST_CASE(
  "db_pool: a job whose connection was lost mid-transaction runs again on a fresh one "
  "with the secret it captured",
  "[db_pool]") {
  pool_fixture f;
  f.warm();
  std::string plain = "correct horse battery";
  auto password = core::make_secret(plain);
  CHECK(plain.empty()); // the caller's copy is wiped as the secret takes it
  auto attempts = std::make_shared<std::atomic<int>>(0);
  auto seen = std::make_shared<std::vector<std::string>>();
  auto job = make_job(
    [password, attempts, seen](persistence::backend& b) -> result<std::string> {
      seen->emplace_back(password->view()); // used before the failure, as a hash would be
      pqxx::work tx{b.pg.connection()};
      tx.exec("SELECT 1");
      if (attempts->fetch_add(1) == 0)
        lose_connection(tx);
      return std::string{password->view()};
    },
    std::chrono::seconds(20));
  auto retries_before = f.pool->counters().retries.load();
  auto r = f.run<std::string>(std::move(job));
  INFO((r ? std::string{"ok"} : r.error().detail));
  REQUIRE(r);
  CHECK(r.value() == "correct horse battery");
  CHECK(attempts->load() == 2);
  CHECK(*seen == std::vector<std::string>{"correct horse battery", "correct horse battery"});
  CHECK(f.pool->counters().retries.load() == retries_before + 1);
}

TEST_CASE("db_pool: an in-doubt COMMIT is never run again", "[db_pool]") {
  pool_fixture f;
  f.warm(); // a broken connection that was open before the job would be retried
  auto attempts = std::make_shared<std::atomic<int>>(0);
  auto r = f.run<bool>(make_job(
    [attempts](persistence::backend& b) -> result<bool> {
      pqxx::work tx{b.pg.connection()};
      attempts->fetch_add(1);
      throw pqxx::in_doubt_error("simulated: the connection broke during COMMIT");
    },
    std::chrono::seconds(20)));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::unavailable);
  CHECK(attempts->load() == 1);
  CHECK(f.pool->counters().retries.load() == 0);
}

TEST_CASE("db_pool: serialization failures and deadlocks are retried at most three times in all",
          "[db_pool]") {
  pool_fixture f;
  for (bool deadlock : {false, true}) {
    auto attempts = std::make_shared<std::atomic<int>>(0);
    auto before = f.pool->counters().retries.load();
    auto r = f.run<bool>(make_job(
      [attempts, deadlock](persistence::backend& b) -> result<bool> {
        pqxx::work tx{b.pg.connection()};
        attempts->fetch_add(1);
        if (deadlock)
          throw pqxx::deadlock_detected("simulated deadlock");
        throw pqxx::serialization_failure("simulated serialization failure");
      },
      std::chrono::seconds(20)));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::unavailable);
    CHECK(attempts->load() == 3);
    CHECK(f.pool->counters().retries.load() == before + 2);
  }
}

TEST_CASE("db_pool: an error no retry can cure runs once and answers its own failure",
          "[db_pool]") {
  pool_fixture f;
  auto attempts = std::make_shared<std::atomic<int>>(0);
  auto r = f.run<bool>(make_job(
    [attempts](persistence::backend& b) -> result<bool> {
      pqxx::work tx{b.pg.connection()};
      attempts->fetch_add(1);
      throw pqxx::unique_violation("simulated unique violation");
    },
    std::chrono::seconds(20)));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::conflict);
  CHECK(attempts->load() == 1);
  CHECK(f.pool->counters().retries.load() == 0);
}

TEST_CASE("db_pool: a job that expired in its queue answers without running", "[db_pool]") {
  pool_fixture f;
  auto attempts = std::make_shared<std::atomic<int>>(0);
  auto work = [attempts](persistence::backend&) -> result<bool> {
    attempts->fetch_add(1);
    return true;
  };
  auto late = make_job(work, std::chrono::milliseconds(-1));
  auto r = f.run<bool>(std::move(late));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::timeout);
  auto shed = make_job(work, std::chrono::milliseconds(-1));
  shed.shed_when_late = true; // refused work answers 503, not 504
  auto s = f.run<bool>(std::move(shed));
  REQUIRE_FALSE(s);
  CHECK(s.error().code == errc::unavailable);
  CHECK(attempts->load() == 0);
}
