// Fault: Redis goes away while clients keep working. Redis is only a
// cache: every endpoint must keep answering correctly from PostgreSQL (no 5xx, no hang), the
// circuit breaker must stop paying a Redis failure per request, close by itself when Redis is
// back, and no value older than a write made during the outage may be served afterwards.
//
// Two ways to lose it: a stop and restart (Redis comes back with the data it had saved, as a
// Redis with persistence does), and a freeze (SIGSTOP: connections are accepted but nothing
// answers, like a partition). Either way it returns holding the values it had cached before the
// outage, so the "no stale value" promise is really put to the test: the product renamed during
// the outage is read again after its actor passivated (it activates from PostgreSQL; Redis
// holds no copy of it), and searched for by a word of its name, whose result Redis held from
// before the outage (the rename's invalidation of the catalog version failed and waited until
// Redis was back).

#include "core/ids.hpp"
#include "faults/fault_support.hpp"
#include "persistence/search_store.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <cmath>
#include <iostream>
#include <sstream>

namespace {

using namespace emporium::faults;
using emporium::test::http_client;
using emporium::test::http_response;
using emporium::test::server_process;
using namespace std::chrono_literals;

constexpr int pool_size = 4;                 // postgres.pool_size default: one Redis client each
constexpr int breaker_open_ms = 1'000;       // redis.breaker_open_ms default
constexpr double redis_timeout_ms = 200;     // redis.timeout_ms default
constexpr double request_timeout_ms = 5'000; // http.request_timeout_ms default

/// `r` unchanged when it has `status` and its body satisfies `right`; an answer with the right
/// status and a wrong body is turned into status 599 (with what was wrong), which the load
/// counts as unexpected: a cache fault must never change what an answer says.
http_response checked(http_response r, int status, const std::function<bool(const json&)>& right,
                      const char* what) {
  if (r.status != status)
    return r;
  try {
    if (right(r.json()))
      return r;
  } catch (const std::exception&) {
  }
  r.body = std::string{"wrong body, expected "} + what + ": " + r.body;
  r.status = 599;
  return r;
}

/// The load of both Redis tests: reads and writes of every kind that must not need Redis.
/// Every one of them has exactly one correct answer, status and body.
std::vector<operation> cache_load(const std::vector<std::string>& products, const shopper& buyer,
                                  const std::string& order_id, const std::string& email,
                                  const std::string& password) {
  auto any = [products](std::mt19937& rng) {
    return products[std::uniform_int_distribution<std::size_t>{0, products.size() - 1}(rng)];
  };
  auto page_of_at_most = [](std::size_t n) {
    return [n](const json& j) { return j.at("items").is_array() && j.at("items").size() <= n; };
  };
  std::vector<operation> ops;
  ops.push_back(
    {"GET /products/{id}",
     30,
     [any](http_client& c, std::mt19937& rng) {
       auto id = any(rng);
       return checked(
         c.get("/products/" + id), 200,
         [&](const json& j) { return j.at("id") == id && j.at("stock").get<std::int64_t>() >= 0; },
         "the product asked for");
     },
     {200}});
  ops.push_back({"GET /products",
                 5,
                 [page_of_at_most](http_client& c, std::mt19937&) {
                   return checked(c.get("/products?limit=5"), 200, page_of_at_most(5),
                                  "a page of at most 5 products");
                 },
                 {200}});
  ops.push_back({"GET /search",
                 5,
                 [page_of_at_most](http_client& c, std::mt19937&) {
                   return checked(c.get("/search?q=widget&limit=5"), 200, page_of_at_most(5),
                                  "a page of at most 5 results");
                 },
                 {200}});
  ops.push_back(
    {"PATCH /products/{id}",
     10,
     [any](http_client& c, std::mt19937& rng) {
       auto price = std::uniform_int_distribution<int>{100, 9'999}(rng);
       auto id = any(rng);
       return checked(
         c.request("PATCH", "/products/" + id, json{{"price_cents", price}}.dump(), admin()), 200,
         [&](const json& j) { return j.at("id") == id && j.at("price_cents") == price; },
         "the product with the new price");
     },
     {200}});
  ops.push_back({"POST /products",
                 4,
                 [](http_client& c, std::mt19937&) {
                   auto sku = emporium::test::unique("redis-fault");
                   json body{{"sku", sku},
                             {"name", "Fault widget"},
                             {"price_cents", 500},
                             {"currency", "USD"},
                             {"stock", 5}};
                   return checked(
                     c.request("POST", "/products", body.dump(), admin()), 201,
                     [&](const json& j) { return j.at("sku") == sku; }, "the new product");
                 },
                 {201}});
  ops.push_back({"POST /orders",
                 8,
                 [any, buyer](http_client& c, std::mt19937& rng) {
                   auto product = any(rng);
                   return checked(
                     c.request("POST", "/orders", order_body({{product, 1}}).dump(), buyer.auth()),
                     201,
                     [&](const json& j) {
                       return j.at("customer_id") == buyer.id && j.at("status") == "pending_payment"
                              && j.at("items").size() == 1
                              && j.at("items").at(0).at("product_id") == product
                              && j.at("items").at(0).at("quantity") == 1;
                     },
                     "the buyer's new order of one unit");
                 },
                 {201}});
  ops.push_back(
    {"GET /orders/{id}",
     5,
     [order_id, buyer](http_client& c, std::mt19937&) {
       return checked(
         c.get("/orders/" + order_id, buyer.auth()), 200,
         [&](const json& j) { return j.at("id") == order_id && j.at("customer_id") == buyer.id; },
         "the order asked for");
     },
     {200}});
  ops.push_back(
    {"GET /customers/{id}",
     5,
     [buyer, email](http_client& c, std::mt19937&) {
       return checked(
         c.get("/customers/" + buyer.id, buyer.auth()), 200,
         [&](const json& j) { return j.at("id") == buyer.id && j.at("email") == email; },
         "the buyer's profile");
     },
     {200}});
  ops.push_back(
    {"POST /sessions",
     1,
     [email, password, buyer](http_client& c, std::mt19937&) {
       return checked(
         c.request("POST", "/sessions", json{{"email", email}, {"password", password}}.dump()), 200,
         [&](const json& j) {
           return j.at("customer_id") == buyer.id && !j.at("token").get<std::string>().empty();
         },
         "a token for the buyer");
     },
     {200}});
  ops.push_back(
    {"GET /readyz", 2, [](http_client& c, std::mt19937&) { return c.get("/readyz"); }, {200}});
  return ops;
}

/// `text` spelled with letters only (digits become a..j, the rest z): a word search matches
/// only where it was put.
std::string letters_of(const std::string& text) {
  std::string out = "zq";
  for (char ch : text)
    out += (ch >= '0' && ch <= '9') ? static_cast<char>('a' + (ch - '0')) : 'z';
  return out;
}

/// Everything a Redis test needs on the server before the fault.
struct fixture {
  server_process srv{fault_env({{"EMPORIUM_ACTORS_IDLE_TIMEOUT_S", "1"}})};
  http_client c{srv.host(), srv.port(), 30s};
  std::vector<std::string> products;
  std::string watched; ///< renamed during the outage; no load touches it
  std::string word;    ///< in the watched product's name, and in no other product's
  shopper buyer;
  std::string email, password, order_id;

  fixture() {
    for (int i = 0; i < 6; ++i)
      products.push_back(create_product(c, 1'000'000));
    word = letters_of(emporium::test::unique("w"));
    watched = create_product(c, 10, 1'000, "Before the outage " + word);
    email = emporium::test::unique("redis-fault") + "@example.com";
    password = "pw-" + emporium::test::unique("x");
    auto r = c.request("POST", "/customers",
                       json{{"email", email}, {"name", "Buyer"}, {"password", password}}.dump());
    REQUIRE(r.status == 201);
    buyer.id = r.json().at("id").get<std::string>();
    auto l = c.request("POST", "/sessions", json{{"email", email}, {"password", password}}.dump());
    REQUIRE(l.status == 200);
    buyer.token = l.json().at("token").get<std::string>();
    auto o = c.request("POST", "/orders", order_body({{products[0], 1}}).dump(), buyer.auth());
    REQUIRE(o.status == 201);
    order_id = o.json().at("id").get<std::string>();
    // Warm the cache: every product read once, the watched one cached as it is now.
    for (const auto& p : products)
      REQUIRE(c.get("/products/" + p).status == 200);
    REQUIRE(c.get("/products/" + watched).status == 200);
    REQUIRE(c.get("/search?q=widget&limit=5").status == 200);
    auto found = c.get("/search?q=" + word);
    REQUIRE(found.status == 200);
    REQUIRE(found.json().at("items").size() == 1); // cached now, under the catalog version
  }

  std::vector<operation> load() const {
    return cache_load(products, buyer, order_id, email, password);
  }
};

/// Waits until /metrics shows the Redis breaker closed, no invalidation pending and the cache used
/// again (hits grow: searches read their catalog version from Redis); the time that took, or
/// -1 after `limit`.
double wait_cache_recovered(const server_process& srv, http_client& c, const std::string& product,
                            steady::time_point returned, std::chrono::seconds limit) {
  auto hits_before = metric(scrape(srv), "emporium_cache_hits_total");
  auto deadline = steady::now() + limit;
  while (steady::now() < deadline) {
    c.get("/products/" + product); // one read through the cache path, in case the load is idle
    auto m = scrape(srv);
    if (metric(m, "emporium_circuit_breaker_state{dependency=\"redis\"}") == 0
        && metric(m, "emporium_cache_pending_invalidations") == 0
        && metric(m, "emporium_cache_hits_total") > hits_before)
      return millis(returned, steady::now());
    std::this_thread::sleep_for(50ms);
  }
  return -1;
}

/// Polls the Redis breaker state from /metrics until `until`; the highest state seen.
int watch_breaker(const server_process& srv, steady::time_point until) {
  int highest = 0;
  while (steady::now() < until) {
    auto state = metric(scrape(srv), "emporium_circuit_breaker_state{dependency=\"redis\"}");
    highest = std::max(highest, static_cast<int>(state));
    std::this_thread::sleep_for(100ms);
  }
  return highest;
}

bool is_login(const sample& s) {
  return s.op == "POST /sessions"; // Argon2id: slow by design, whatever Redis does
}

/// Waits, the load stopped, until no product actor is alive (actors.idle_timeout_s=1), so that
/// the next read of a product activates it again and loads it through the cache. Whether that
/// happened within `limit`.
bool wait_products_passivated(const server_process& srv, std::chrono::seconds limit) {
  auto deadline = steady::now() + limit;
  while (steady::now() < deadline) {
    if (metric(scrape(srv), "emporium_actors_active{kind=\"product\"}") == 0)
      return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

/// The name the API gives the watched product, read and searched for.
struct watched_view {
  int status = 0;
  std::string api_name;
  std::string searched_name; ///< the one search result's name, empty when not exactly one
  std::string in_redis;      ///< EXISTS of its old product key: "0", nothing writes it any more
  bool passivated = false;   ///< no product actor was alive before the read
  bool activated = false;    ///< the read activated the product again (metrics)
};

/// Stops the load, waits until every product actor passivated, then reads the watched product
/// (that read activates it again) and searches for it.
watched_view look_at(http_client& c, services& svc, const server_process& srv, load_generator& load,
                     const std::string& id, const std::string& word) {
  load.stop();
  watched_view v;
  v.passivated = wait_products_passivated(srv, 15s);
  auto activations_before = metric(scrape(srv),
                                   "emporium_actor_activations_total{kind=\"product\"}");
  auto r = c.get("/products/" + id);
  v.activated = metric(scrape(srv), "emporium_actor_activations_total{kind=\"product\"}")
                > activations_before;
  v.status = r.status;
  if (r.status == 200)
    v.api_name = r.json().value("name", "");
  auto found = c.get("/search?q=" + word);
  if (found.status == 200 && found.json().at("items").size() == 1)
    v.searched_name = found.json().at("items").at(0).value("name", "");
  v.in_redis = svc.redis_cli({"EXISTS", "emporium:product:" + id});
  return v;
}

/// The checks and the summary line shared by both Redis faults.
void conclude(const std::string& fault, const std::vector<sample>& all, steady::time_point from,
              steady::time_point returned, double recovery_ms, double cache_errors,
              double outage_ms, int breaker_seen, const std::string& renamed,
              const watched_view& after) {
  auto during = summarize(all, from, returned);
  auto whole = summarize(all, steady::time_point::min(), steady::time_point::max());
  auto fast = summarize(all, from, returned, [](const sample& s) { return !is_login(s); });
  // Each worker's open connection fails once, then one probe per open period, plus slack for
  // calls racing the breaker as it opens.
  double allowed_errors = pool_size + std::ceil(outage_ms / breaker_open_ms) + 6;
  // Answers that took longer than one Redis timeout (redis.timeout_ms, 200 ms): with the breaker
  // doing its job only the few calls that find Redis gone (and what queued behind them) pay it.
  auto slow = summarize(all, from, returned,
                        [](const sample& s) { return !is_login(s) && s.ms >= redis_timeout_ms; });
  double slow_share = during.requests ? double(slow.requests) / double(during.requests) : 0;
  bool stale_free = after.passivated && after.activated && after.status == 200
                    && after.api_name == renamed && after.searched_name == renamed
                    && after.in_redis == "0";

  std::ostringstream inv;
  inv << "unexpected answers " << whole.unexpected << " of " << whole.requests
      << " (none may be 5xx or missing); Redis failures paid " << cache_errors << " for "
      << during.requests << " requests (allowed " << allowed_errors << "); breaker state seen "
      << breaker_seen << "; answers slower than the Redis timeout " << slow.requests << " ("
      << static_cast<int>(slow_share * 100) << "%); longest non-login answer "
      << static_cast<long>(fast.longest_ms) << " ms (deadline "
      << static_cast<long>(request_timeout_ms) << "); after the return the API says '"
      << after.api_name << "' (read after every product actor passivated: "
      << (after.passivated && after.activated ? "yes" : "NO") << "), search says '"
      << after.searched_name << "', Redis holds " << (after.in_redis == "0" ? "no" : "a")
      << " copy of the product" << (stale_free ? "" : " STALE");
  bool ok = whole.unexpected == 0 && cache_errors <= allowed_errors && breaker_seen >= 1
            && fast.longest_ms < request_timeout_ms && recovery_ms >= 0 && stale_free;
  report_fault(fault, during, recovery_ms, ok, inv.str());

  for (const auto& e : whole.unexpected_examples)
    UNSCOPED_INFO("unexpected: " << e);
  CHECK(whole.unexpected == 0);
  CHECK(during.requests > 0);
  CHECK(cache_errors <= allowed_errors);
  CHECK(breaker_seen >= 1); // it did open
  // How fast is for bench/: here only that every answer came within the request deadline.
  CHECK(fast.longest_ms < request_timeout_ms);
  CHECK(recovery_ms >= 0);
  CHECK(after.passivated);
  CHECK(after.activated);
  CHECK(after.status == 200);
  CHECK(after.api_name == renamed);
  CHECK(after.searched_name == renamed);
  CHECK(after.in_redis == "0");
}

} // namespace

TEST_CASE(
  "Redis stopped and restarted under load: answers from PostgreSQL, breaker "
  "opens and closes by itself, no stale value",
  "[faults][redis]") {
  services svc;
  service_guard guard{svc};
  fixture f;
  load_generator load{f.srv, f.load(), 4};
  load.start();
  std::this_thread::sleep_for(1500ms);

  auto errors_before = metric(scrape(f.srv), "emporium_cache_errors_total");
  auto fault_start = steady::now();
  svc.stop_redis_keeping_data();
  std::this_thread::sleep_for(300ms);
  auto renamed = "Renamed during the Redis stop " + f.word;
  auto patched = f.c.request("PATCH", "/products/" + f.watched, json{{"name", renamed}}.dump(),
                             admin());
  INFO("PATCH during the outage -> " << patched.status << " " << patched.body);
  REQUIRE(patched.status == 200);
  int breaker_seen = watch_breaker(f.srv, fault_start + 4s);
  auto errors_after = metric(scrape(f.srv), "emporium_cache_errors_total");

  auto returned = steady::now();
  svc.start_redis();
  returned = steady::now(); // Redis answers PING from here on
  auto outage_ms = millis(fault_start, returned);
  // It came back with what it held (the stale name among it, there to be served unless the
  // server makes sure it is not): Redis says how many keys it loaded from its snapshot. (Its
  // keys themselves may be gone by the time we look: the server may have cleared them.)
  auto persistence = svc.redis_cli({"INFO", "persistence"});
  long keys_loaded = -1;
  if (auto at = persistence.find("rdb_last_load_keys_loaded:"); at != std::string::npos)
    keys_loaded = std::stol(
      persistence.substr(at + std::string{"rdb_last_load_keys_loaded:"}.size()));
  auto recovery_ms = wait_cache_recovered(f.srv, f.c, f.products[0], returned, 15s);

  auto after = look_at(f.c, svc, f.srv, load, f.watched, f.word);

  INFO("Redis INFO persistence after its restart: " << persistence);
  CHECK(keys_loaded > 0);
  conclude("redis-stop-start", load.samples(), fault_start, returned, recovery_ms,
           errors_after - errors_before, outage_ms, breaker_seen, renamed, after);
}

TEST_CASE(
  "Redis frozen (SIGSTOP) under load: no timeout per request, and the values it "
  "cached before the outage are not served after it thaws",
  "[faults][redis]") {
  services svc;
  service_guard guard{svc};
  fixture f;

  load_generator load{f.srv, f.load(), 4};
  load.start();
  std::this_thread::sleep_for(1500ms);

  auto errors_before = metric(scrape(f.srv), "emporium_cache_errors_total");
  auto fault_start = steady::now();
  svc.freeze_redis();
  std::this_thread::sleep_for(300ms);
  auto renamed = "Renamed during the Redis freeze " + f.word;
  auto patched = f.c.request("PATCH", "/products/" + f.watched, json{{"name", renamed}}.dump(),
                             admin());
  INFO("PATCH during the freeze -> " << patched.status << " " << patched.body);
  REQUIRE(patched.status == 200);
  int breaker_seen = watch_breaker(f.srv, fault_start + 4s);
  auto errors_after = metric(scrape(f.srv), "emporium_cache_errors_total");

  svc.thaw_redis();
  auto returned = steady::now();
  auto outage_ms = millis(fault_start, returned);
  auto recovery_ms = wait_cache_recovered(f.srv, f.c, f.products[0], returned, 15s);

  auto after = look_at(f.c, svc, f.srv, load, f.watched, f.word);

  conclude("redis-freeze-thaw", load.samples(), fault_start, returned, recovery_ms,
           errors_after - errors_before, outage_ms, breaker_seen, renamed, after);
}

// -- what a server holds after lost Redis writes
// ---------------------------------------------------

namespace {

/// A customer with two sessions: `revoked` is deleted in PostgreSQL during the outage (as an
/// operator revokes a session), `kept` stays valid.
struct two_sessions {
  std::string id, revoked, kept;
};

two_sessions customer_with_two_sessions(http_client& c) {
  two_sessions out;
  auto email = emporium::test::unique("stale") + "@example.com";
  std::string password = "pw-" + emporium::test::unique("x");
  auto r = c.request("POST", "/customers",
                     json{{"email", email}, {"name", "Stale"}, {"password", password}}.dump());
  REQUIRE(r.status == 201);
  out.id = r.json().at("id").get<std::string>();
  for (auto* token : {&out.revoked, &out.kept}) {
    auto l = c.request("POST", "/sessions", json{{"email", email}, {"password", password}}.dump());
    REQUIRE(l.status == 200);
    *token = l.json().at("token").get<std::string>();
  }
  return out;
}

/// The Redis key of a session's copy: the hash of the token's stored part (before the signature).
std::string session_key(const std::string& token) {
  return "emporium:session:" + emporium::core::sha256_hex(token.substr(0, token.rfind('.')));
}

void revoke_in_postgres(const std::string& token) {
  pqxx::connection conn{emporium::test::pg_url()};
  pqxx::work tx{conn};
  auto hash = emporium::core::sha256_hex(token.substr(0, token.rfind('.')));
  REQUIRE(tx.exec_params("DELETE FROM sessions WHERE token_hash = $1", hash).affected_rows() == 1);
  tx.commit();
}

int whoami(http_client& c, const two_sessions& who, const std::string& token) {
  return c.get("/customers/" + who.id, {{"Authorization", "Bearer " + token}}).status;
}

/// The name of the one product a search for `word` finds; empty when it finds another count.
std::string searched_name(http_client& c, const std::string& word) {
  auto r = c.get("/search?q=" + word);
  if (r.status != 200 || r.json().at("items").size() != 1)
    return {};
  return r.json().at("items").at(0).value("name", "");
}

/// A product named with `word` and a customer with two sessions, every one of them read once
/// through `c`: the search result and both session copies are in Redis.
struct cached_state {
  std::string word = letters_of(emporium::test::unique("s"));
  std::string product;
  two_sessions who;

  explicit cached_state(http_client& c) {
    product = create_product(c, 10, 1'000, "Before the outage " + word);
    REQUIRE(c.get("/products/" + product).status == 200);
    REQUIRE(searched_name(c, word) == "Before the outage " + word);
    who = customer_with_two_sessions(c);
    REQUIRE(whoami(c, who, who.revoked) == 200);
    REQUIRE(whoami(c, who, who.kept) == 200);
  }
};

/// While Redis is down: the product renamed through `c` (its search invalidation fails) and
/// one session revoked in PostgreSQL. The new name.
std::string change_during_outage(http_client& c, const cached_state& st) {
  auto renamed = "Renamed while Redis was down " + st.word;
  auto patched = c.request("PATCH", "/products/" + st.product, json{{"name", renamed}}.dump(),
                           admin());
  INFO("PATCH during the outage -> " << patched.status << " " << patched.body);
  REQUIRE(patched.status == 200);
  revoke_in_postgres(st.who.revoked);
  return renamed;
}

/// Redis came back holding what it had before the outage: the stale search result's catalog
/// version and the revoked session's copy (so the checks after this are a real test).
void check_redis_holds_stale(services& svc, const cached_state& st) {
  auto copy = svc.redis_cli({"GET", session_key(st.who.revoked)});
  INFO("the revoked session's copy in Redis: " << copy);
  CHECK(copy.rfind(st.who.id + "|", 0) == 0);
  CHECK_FALSE(
    svc.redis_cli({"GET", emporium::persistence::search_store::catalog_version_key}).empty());
}

void check_fresh(http_client& c, const cached_state& st, const std::string& renamed) {
  auto p = c.get("/products/" + st.product);
  REQUIRE(p.status == 200);
  CHECK(p.json().at("name") == renamed);
  CHECK(searched_name(c, st.word) == renamed);
  CHECK(whoami(c, st.who, st.who.revoked) == 401);
  CHECK(whoami(c, st.who, st.who.kept) == 200);
}

} // namespace

TEST_CASE(
  "Redis down while a server writes, the server stopped, Redis back with its old data, the "
  "server started again: no stale product, search result or revoked session is served",
  "[faults][redis]") {
  services svc;
  service_guard guard{svc};
  server_process srv{fault_env()};
  http_client c{srv.host(), srv.port(), 30s};
  cached_state st{c};

  svc.stop_redis_keeping_data();
  auto renamed = change_during_outage(c, st);
  // Stopped with its invalidations pending: they are lost with the process.
  REQUIRE(srv.stop_term() == 0);
  svc.start_redis();
  check_redis_holds_stale(svc, st);

  srv.start();
  http_client fresh{srv.host(), srv.port(), 30s};
  check_fresh(fresh, st, renamed);
}

TEST_CASE(
  "a second server, which found Redis down while the first one failed to write it, serves "
  "nothing stale once Redis is back, while the first still holds its invalidations",
  "[faults][redis]") {
  services svc;
  service_guard guard{svc};
  server_process first{fault_env()};
  // One db worker and one search worker: the connection that failed during the outage is the
  // one that reads once Redis is back.
  server_process second{
    fault_env({{"EMPORIUM_ACTORS_IDLE_TIMEOUT_S", "1"}, {"EMPORIUM_POSTGRES_POOL_SIZE", "1"}})};
  http_client c1{first.host(), first.port(), 30s};
  http_client c2{second.host(), second.port(), 30s};
  cached_state st{c1};
  // The second server cached the same session copies and search result, and read the product.
  REQUIRE(c2.get("/products/" + st.product).status == 200);
  REQUIRE(searched_name(c2, st.word) == "Before the outage " + st.word);
  REQUIRE(whoami(c2, st.who, st.who.revoked) == 200);

  svc.stop_redis_keeping_data();
  auto renamed = change_during_outage(c1, st);
  // The second server finds Redis down too (a search and a session lookup), and answers them
  // from PostgreSQL.
  CHECK(c2.get("/search?q=" + letters_of(emporium::test::unique("o"))).status == 200);
  CHECK(whoami(c2, st.who, st.who.kept) == 200);
  svc.start_redis();
  check_redis_holds_stale(svc, st);
  // The first server has not touched Redis since: its invalidations still wait.
  CHECK(metric(scrape(first), "emporium_cache_pending_invalidations") > 0);

  // Past the second server's own session cache (auth.session_cache_ms, 2 s), and its product
  // actor passivated (two servers outside a cluster each hold an actor of the product; the
  // second learns the rename from PostgreSQL at its next activation).
  std::this_thread::sleep_for(2500ms);
  REQUIRE(wait_products_passivated(second, 15s));
  check_fresh(c2, st, renamed);
}
