// The database workers' retry loop (actors/db_pool.cpp), the one production runs: a job whose
// connection was lost mid-transaction runs again on a fresh one with exactly what it captured,
// an in-doubt COMMIT never runs again, serialization failures are retried a bounded number of
// times, other errors are not retried, and a job that expired in its queue never runs. Batchable
// jobs queued behind each other run as one batch, in order with the other jobs, and alone when
// their batch failed.

#include "actors/db_pool.hpp"
#include "core/secret.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
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

TEST_CASE("db_pool: a side pool runs only its workers, the main pool one lane more per kind",
          "[db_pool]") {
  auto settings = test::test_settings();
  caf::actor_system_config cfg;
  register_types(cfg);
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  auto before = sys.registry().running();
  db_pool side{sys, settings, 2, pool_lanes::none};
  CHECK(sys.registry().running() == before + 2);
  CHECK_THROWS_AS(side.for_lane(db_lane::carts, "cart-1"), std::out_of_range);
  db_pool main{sys, settings, 2};
  CHECK(sys.registry().running() == before + 2 + 2 + db_lane_count);
  side.stop();
  main.stop();
  sys.await_all_actors_done();
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

// -- batches (make_batch_job) --------------------------------------------------------------------

namespace {

/// What the batch function under test saw, shared with the test.
struct batch_log {
  std::mutex mutex;
  std::vector<std::string> runs; ///< "batch 1,2" per call of the batch function, "plain" per job
};

struct numbered {
  int n = 0;
  std::shared_ptr<batch_log> log;
};

/// The batch function under test: runs a real statement for the whole batch, records what it
/// was given, and answers each input "n of size". An input of 13 breaks the statement of its
/// whole batch (as a constraint one input broke would), and fails alone.
std::vector<result<std::string>> echo_batch(persistence::backend& b,
                                            const std::vector<const numbered*>& in) {
  std::string seen;
  for (const auto* i : in)
    seen += (seen.empty() ? "" : ",") + std::to_string(i->n);
  {
    std::lock_guard<std::mutex> guard{in.front()->log->mutex};
    in.front()->log->runs.push_back("batch " + seen);
  }
  pqxx::nontransaction tx{b.pg.connection()};
  for (const auto* i : in)
    if (i->n == 13)
      tx.exec("SELECT 1 / 0"); // division_by_zero: not retried
  tx.exec("SELECT 1");
  std::vector<result<std::string>> out;
  for (const auto* i : in)
    out.emplace_back(std::to_string(i->n) + " of " + std::to_string(in.size()));
  return out;
}

/// A second kind of batchable job: echo_batch under another name.
std::vector<result<std::string>> other_batch(persistence::backend& b,
                                             const std::vector<const numbered*>& in) {
  {
    std::lock_guard<std::mutex> guard{in.front()->log->mutex};
    in.front()->log->runs.push_back("other:");
  }
  return echo_batch(b, in);
}

/// Sends `jobs` to the pool's only worker behind a job that holds it until all are queued, and
/// collects every answer (a string, or "error: " and the failure's detail).
std::vector<std::string> run_queued(pool_fixture& f, std::vector<db_job> jobs) {
  caf::scoped_actor self{*f.sys};
  auto release = std::make_shared<std::promise<void>>();
  auto held = release->get_future().share();
  self->send(f.pool->for_key("k"), make_job(
                                     [held](persistence::backend&) -> result<std::string> {
                                       held.wait();
                                       return std::string{"holder"};
                                     },
                                     std::chrono::seconds(20)));
  for (auto& job : jobs)
    self->send(f.pool->for_key("k"), std::move(job));
  release->set_value();
  std::vector<std::string> answers;
  for (std::size_t i = 0; i <= jobs.size(); ++i)
    self->receive([&](std::string& s) { answers.push_back(s); },
                  [&](caf::error& e) { answers.push_back("error: " + to_failure(e).detail); },
                  caf::after(std::chrono::seconds(30)) >> [&] { answers.push_back("no answer"); });
  return answers;
}

} // namespace

TEST_CASE(
  "db_pool: batchable jobs queued one behind another run as one batch and each gets its "
  "own answer, in order, and a job of another kind runs between batches, not before",
  "[db_pool]") {
  pool_fixture f;
  f.warm();
  auto log = std::make_shared<batch_log>();
  auto timeout = std::chrono::seconds(20);
  std::vector<db_job> jobs;
  for (int n : {1, 2, 3})
    jobs.push_back(make_batch_job<echo_batch>(numbered{n, log}, timeout));
  jobs.push_back(make_job(
    [log](persistence::backend&) -> result<std::string> {
      std::lock_guard<std::mutex> guard{log->mutex};
      log->runs.push_back("plain");
      return std::string{"plain"};
    },
    timeout));
  jobs.push_back(make_batch_job<echo_batch>(numbered{4, log}, timeout));
  auto batches_before = f.pool->counters().batches.load();
  auto answers = run_queued(f, std::move(jobs));
  CHECK(answers
        == std::vector<std::string>{"holder", "1 of 3", "2 of 3", "3 of 3", "plain", "4 of 1"});
  CHECK(log->runs == std::vector<std::string>{"batch 1,2,3", "plain", "batch 4"});
  CHECK(f.pool->counters().batches.load() == batches_before + 2);
}

TEST_CASE("db_pool: a batch that one job's input breaks runs each job alone: only that one fails",
          "[db_pool]") {
  pool_fixture f;
  f.warm();
  auto log = std::make_shared<batch_log>();
  std::vector<db_job> jobs;
  for (int n : {12, 13, 14})
    jobs.push_back(make_batch_job<echo_batch>(numbered{n, log}, std::chrono::seconds(20)));
  auto answers = run_queued(f, std::move(jobs));
  REQUIRE(answers.size() == 4);
  CHECK(answers[1] == "12 of 1");
  CHECK(answers[2].rfind("error: ", 0) == 0);
  CHECK(answers[3] == "14 of 1");
  CHECK(log->runs
        == std::vector<std::string>{"batch 12,13,14", "batch 12", "batch 13", "batch 14"});
  CHECK(f.pool->counters().retries.load() == 0);
}

TEST_CASE(
  "db_pool: batchable jobs of two kinds are held together and run kind by kind, except "
  "an entity's job of the other kind, which runs what is held first",
  "[db_pool]") {
  pool_fixture f;
  f.warm();
  auto log = std::make_shared<batch_log>();
  auto timeout = std::chrono::seconds(20);
  auto job = [&](bool other, int n, std::string key) {
    auto j = other ? make_batch_job<other_batch>(numbered{n, log}, timeout)
                   : make_batch_job<echo_batch>(numbered{n, log}, timeout);
    j.key = std::move(key);
    return j;
  };
  std::vector<db_job> jobs;
  jobs.push_back(job(false, 1, "cart-1"));
  jobs.push_back(job(true, 2, "cart-2"));
  jobs.push_back(job(false, 3, "cart-3"));
  jobs.push_back(job(true, 4, "cart-1")); // cart-1 has a job of the other kind held
  jobs.push_back(job(false, 5, "cart-5"));
  auto answers = run_queued(f, std::move(jobs));
  CHECK(answers
        == std::vector<std::string>{"holder", "1 of 2", "3 of 2", "2 of 1", "4 of 1", "5 of 1"});
  CHECK(
    log->runs
    == std::vector<std::string>{"batch 1,3", "other:", "batch 2", "other:", "batch 4", "batch 5"});
}
