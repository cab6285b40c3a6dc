// Fault: PostgreSQL restarted between requests. A worker's next job finds its connection dead,
// and the worker runs the job again on a fresh one. Sign-up and login jobs carry a password: a
// job that wiped it during its first attempt hashed (or verified) NUL bytes on the second, so
// the customer's own password failed and a string of NULs of the same length logged in. Every
// password worker and every database worker is made to run such a second attempt here.

#include "faults/fault_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <functional>
#include <thread>

namespace {

using namespace emporium::faults;
using emporium::test::http_client;
using emporium::test::http_response;
using emporium::test::server_process;
using namespace std::chrono_literals;

/// More concurrent requests than workers of any pool: every worker gets at least one.
constexpr int parallel = 8;

struct account {
  std::string email;
  std::string password;
  std::string id;
  std::string token;
};

/// Runs `fn(i, client)` for i in [0, n) on n threads, each with a client of its own.
void concurrently(const server_process& srv, int n,
                  const std::function<void(int, http_client&)>& fn) {
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      try {
        http_client c{srv.host(), srv.port(), 30s};
        fn(i, c);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(i)] = e.what();
      }
    });
  for (auto& t : threads)
    t.join();
  for (const auto& e : errors)
    CHECK(e.empty());
}

/// `n` new accounts with passwords of different lengths (8 to 8 + n - 1 characters).
std::vector<account> new_accounts(const std::string& tag, int n) {
  std::vector<account> out;
  for (int i = 0; i < n; ++i) {
    account a;
    a.email = emporium::test::unique(tag) + "@example.com";
    a.password = std::string(static_cast<std::size_t>(8 + i), static_cast<char>('a' + i));
    out.push_back(a);
  }
  return out;
}

std::string login_body(const std::string& email, const std::string& password) {
  return json{{"email", email}, {"password", password}}.dump();
}

/// Signs every account up at once; each must answer 201.
void sign_up_all(const server_process& srv, std::vector<account>& accounts) {
  std::vector<http_response> answers(accounts.size());
  concurrently(srv, static_cast<int>(accounts.size()), [&](int i, http_client& c) {
    auto& a = accounts[static_cast<std::size_t>(i)];
    answers[static_cast<std::size_t>(i)] = c.request(
      "POST", "/customers",
      json{{"email", a.email}, {"name", "Retry"}, {"password", a.password}}.dump());
  });
  for (std::size_t i = 0; i < accounts.size(); ++i) {
    INFO("sign-up " << i << " -> " << answers[i].status << " " << answers[i].body);
    REQUIRE(answers[i].status == 201);
    accounts[i].id = answers[i].json().at("id").get<std::string>();
  }
}

/// Logs every account in at once with its own password; each must answer 200.
void log_in_all(const server_process& srv, std::vector<account>& accounts) {
  std::vector<http_response> answers(accounts.size());
  concurrently(srv, static_cast<int>(accounts.size()), [&](int i, http_client& c) {
    const auto& a = accounts[static_cast<std::size_t>(i)];
    answers[static_cast<std::size_t>(i)] = c.request("POST", "/sessions",
                                                     login_body(a.email, a.password));
  });
  for (std::size_t i = 0; i < accounts.size(); ++i) {
    INFO("login " << i << " with its password (" << accounts[i].password.size()
                  << " characters) -> " << answers[i].status << " " << answers[i].body);
    REQUIRE(answers[i].status == 200);
    accounts[i].token = answers[i].json().at("token").get<std::string>();
  }
}

/// NULs of each password's length must never log in.
void nuls_refused(const server_process& srv, const std::vector<account>& accounts) {
  std::vector<http_response> answers(accounts.size());
  concurrently(srv, static_cast<int>(accounts.size()), [&](int i, http_client& c) {
    const auto& a = accounts[static_cast<std::size_t>(i)];
    answers[static_cast<std::size_t>(i)] = c.request(
      "POST", "/sessions", login_body(a.email, std::string(a.password.size(), '\0')));
  });
  for (std::size_t i = 0; i < accounts.size(); ++i) {
    INFO("login " << i << " with " << accounts[i].password.size() << " NULs -> "
                  << answers[i].status << " " << answers[i].body);
    CHECK(answers[i].status == 401);
  }
}

/// Every account reads its profile and its orders with its token: the order listing is a job
/// of the database workers every time (no actor keeps it).
void profiles_readable(const server_process& srv, const std::vector<account>& accounts) {
  for (const char* suffix : {"", "/orders"}) {
    std::vector<http_response> answers(accounts.size());
    concurrently(srv, static_cast<int>(accounts.size()), [&](int i, http_client& c) {
      const auto& a = accounts[static_cast<std::size_t>(i)];
      answers[static_cast<std::size_t>(i)] = c.get("/customers/" + a.id + suffix,
                                                   {{"Authorization", "Bearer " + a.token}});
    });
    for (std::size_t i = 0; i < accounts.size(); ++i) {
      INFO("GET /customers/" << accounts[i].id << suffix << " -> " << answers[i].status << " "
                             << answers[i].body);
      CHECK(answers[i].status == 200);
    }
  }
}

double auth_retries(const server_process& srv) {
  return metric(scrape(srv), "emporium_auth_db_retries_total");
}

double db_retries(const server_process& srv) {
  return metric(scrape(srv), "emporium_db_retries_total");
}

} // namespace

TEST_CASE(
  "PostgreSQL restarted: sign-ups and logins retried on a fresh connection keep the "
  "password they were given and NULs never log in",
  "[faults][postgres][auth]") {
  services svc;
  durable_commits durable; // accounts signed up just before a stop must survive it
  service_guard guard{svc};
  server_process srv{fault_env({{"EMPORIUM_AUTH_SIGNUP_WORKERS", "2"},
                                {"EMPORIUM_AUTH_LOGIN_WORKERS", "2"},
                                {"EMPORIUM_POSTGRES_POOL_SIZE", "2"},
                                // the whole burst is queued and waits as long as it must (a
                                // loaded machine hashes slowly): shedding is not this test's
                                // subject
                                {"EMPORIUM_AUTH_SIGNUP_QUEUE_LIMIT", "64"},
                                {"EMPORIUM_HTTP_REQUEST_TIMEOUT_MS", "30000"}})};

  // Every worker of every pool opens its connection.
  auto before = new_accounts("retry-before", parallel);
  sign_up_all(srv, before);
  log_in_all(srv, before);
  profiles_readable(srv, before);
  auto auth_retries_before = auth_retries(srv);
  auto db_retries_before = db_retries(srv);

  // Sign-ups: each worker's first job after the restart runs twice.
  svc.stop_postgres_immediate();
  svc.start_postgres();
  auto after = new_accounts("retry-after", parallel);
  sign_up_all(srv, after);
  auto after_signups = auth_retries(srv);
  CHECK(after_signups > auth_retries_before); // the retry path really ran

  // Logins: likewise, for accounts created before and after.
  svc.stop_postgres_immediate();
  svc.start_postgres();
  log_in_all(srv, after);
  CHECK(auth_retries(srv) > after_signups);
  nuls_refused(srv, after);
  log_in_all(srv, before);
  nuls_refused(srv, before);

  // The database workers' first jobs after the restart.
  svc.stop_postgres_immediate();
  svc.start_postgres();
  profiles_readable(srv, after);
  CHECK(db_retries(srv) > db_retries_before);
}
