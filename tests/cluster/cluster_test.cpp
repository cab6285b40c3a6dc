// Cluster tests: three (or four) real `emporium serve` nodes against the test PostgreSQL and
// Redis, joined over their node ports. What they check is the cluster contract: any node answers
// any request the same (forwarding entity messages to the owner), X-Emporium-Node names the node
// asked, every node names the same owner for a key, one live actor per entity over the whole
// cluster; a node killed with -9, frozen with SIGSTOP, restarted or added loses no acknowledged
// write, writes nothing stale, and its entities are served by the others within 5 s; a node
// alone of three serves no entity until a peer is back. Times are measured and printed
// ("[measure] ..."); the assertions are the bounds the contract promises (5 s to serve a dead
// node's entities, every answer before http.request_timeout_ms), never a speed. Catch2
// assertions are not thread-safe: load threads only record, checks run afterwards.

#include "cluster/cluster_support.hpp"
#include "faults/fault_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

namespace {

using namespace emporium::cluster_test;
using emporium::faults::admin;
using emporium::faults::operation;
using emporium::faults::orders_of;
using emporium::faults::sample;
using emporium::faults::shopper;
using emporium::test::http_client;
using emporium::test::http_response;
using namespace std::chrono_literals;
namespace faults = emporium::faults;
namespace test = emporium::test;

/// http.request_timeout_ms of every node (the default, set explicitly because the tests bound
/// every answer by it).
constexpr int request_timeout_ms = 5'000;
/// What the contract promises: a dead or frozen node's entities are served again within this.
constexpr double takeover_bound_ms = 5'000;
constexpr std::int64_t initial_stock = 5'000;

cluster_options options(int started = 3, int reserved = 0) {
  return {
    started, reserved, {{"EMPORIUM_HTTP_REQUEST_TIMEOUT_MS", std::to_string(request_timeout_ms)}}};
}

std::string show(const http_response& r) {
  return std::to_string(r.status) + " " + r.body.substr(0, 400);
}

/// One client per live node (index = node; null for a node not running).
std::vector<std::unique_ptr<http_client>> clients_of(cluster& c) {
  std::vector<std::unique_ptr<http_client>> out(static_cast<std::size_t>(c.size()));
  for (int i : c.live())
    out[i] = std::make_unique<http_client>(c.node(i).host(), c.node(i).port(), 30s);
  return out;
}

/// `r`, which must have `status` (the test stops otherwise, saying what was sent).
http_response expect(http_response r, int status, const std::string& what) {
  INFO(what << " -> " << show(r));
  REQUIRE(r.status == status);
  return r;
}

/// The version an ETag "vN" names; -1 for anything else.
std::int64_t version_of(const std::string& etag) {
  if (etag.size() < 4 || etag.rfind("\"v", 0) != 0 || etag.back() != '"')
    return -1;
  try {
    return std::stoll(etag.substr(2, etag.size() - 3));
  } catch (const std::exception&) {
    return -1;
  }
}

/// GET on a fresh connection to node i; status 0 when there was no answer.
http_response get_via(cluster& c, int i, const std::string& target,
                      const test::header_map& headers = admin(), ms timeout = ms{8'000}) {
  try {
    return test::http_request(c.node(i).host(), c.node(i).port(), "GET", target, "", headers,
                              timeout);
  } catch (const std::exception& e) {
    http_response none;
    none.body = e.what();
    return none;
  }
}

/// The node owning the most of `ids` (every live node must agree on each owner), and the ids
/// it owns.
std::pair<int, std::vector<std::string>> busiest_owner(cluster& c,
                                                       const std::vector<std::string>& ids) {
  std::map<int, std::vector<std::string>> owned;
  for (const auto& id : ids) {
    auto owner = c.agreed_owner(id);
    INFO("owners of " << id << " disagree or do not answer");
    REQUIRE(!owner.empty());
    auto i = c.index_of(owner);
    INFO("owner " << owner << " of " << id << " is no configured node");
    REQUIRE(i >= 0);
    owned[i].push_back(id);
  }
  int best = -1;
  for (const auto& [i, list] : owned)
    if (best < 0 || list.size() >= owned[best].size())
      best = i;
  return {best, owned[best]};
}

/// A read that reaches the entity's actor wherever it lives: GET /products/{id} (public) or
/// GET /customers/{id} with the customer's token.
struct probe {
  std::string target;
  test::header_map headers;
};

/// Polls every probe through the nodes `via` (in turn) until three rounds in a row answer 200
/// to every probe; returns the time from `from` to the end of the first of those rounds (when
/// its last answer came: a read may wait for its owner to be declared down), or -1 when `limit`
/// passes first (`last` then says what failed).
double served_again(cluster& c, const std::vector<probe>& probes, const std::vector<int>& via,
                    steady::time_point from, ms limit, std::string& last) {
  int streak = 0;
  steady::time_point streak_start{};
  std::size_t turn = 0;
  while (steady::now() - from < limit) {
    bool all = true;
    for (const auto& p : probes) {
      int i = via[turn++ % via.size()];
      auto r = get_via(c, i, p.target, p.headers);
      if (r.status != 200) {
        all = false;
        last = "GET " + p.target + " via node " + std::to_string(i) + " -> " + show(r);
        break;
      }
    }
    if (all) {
      if (streak++ == 0)
        streak_start = steady::now();
      if (streak == 3)
        return std::chrono::duration<double, std::milli>(streak_start - from).count();
    } else {
      streak = 0;
      std::this_thread::sleep_for(50ms);
    }
  }
  return -1;
}

/// Polls `read` until it returns `expected` or `limit` passes; the last value.
double settle(const std::function<double()>& read, double expected, ms limit = ms{5'000}) {
  auto until = steady::now() + limit;
  double v = read();
  while (v != expected && steady::now() < until) {
    std::this_thread::sleep_for(100ms);
    v = read();
  }
  return v;
}

std::string per_node(cluster& c, const std::string& metric_name) {
  std::ostringstream out;
  for (int i : c.live())
    out << " node " << i << ": " << c.metric(i, metric_name) << ";";
  return out.str();
}

/// The live `kind` actors over the cluster settle at `expected` (within 5 s); a failure names
/// each node's count.
void check_actors(cluster& c, const std::string& kind, double expected) {
  auto sum = settle([&] { return c.actors_active(kind); }, expected);
  auto name = "emporium_actors_active{kind=\"" + kind + "\"}";
  INFO(name << " per node:" << per_node(c, name));
  CHECK(sum == expected);
}

// -- orders under load ----------------------------------------------------------------------------

/// One POST /orders of the load and what it got.
struct placement {
  int shopper = 0;
  std::string key; ///< Idempotency-Key
  std::string body;
  int status = 0; ///< 0: no answer
  std::string order_id;
};

struct order_book {
  std::mutex mtx;
  std::vector<placement> all;
  void record(placement p) {
    std::lock_guard<std::mutex> guard{mtx};
    all.push_back(std::move(p));
  }
  std::vector<placement> snapshot() {
    std::lock_guard<std::mutex> guard{mtx};
    return all;
  }
};

/// POST /orders of one or two of `products` by a random shopper, with an Idempotency-Key,
/// recorded in `book` whatever happens.
operation order_op(std::shared_ptr<order_book> book, std::vector<shopper> shoppers,
                   std::vector<std::string> products, std::set<int> accepted) {
  return {
    "POST /orders", 5,
    [book, shoppers, products](http_client& cl, std::mt19937& rng) {
      placement p;
      p.shopper = std::uniform_int_distribution<int>{0, static_cast<int>(shoppers.size()) - 1}(rng);
      std::vector<std::pair<std::string, int>> lines;
      auto first = std::uniform_int_distribution<std::size_t>{0, products.size() - 1}(rng);
      int n = std::uniform_int_distribution<int>{1, 2}(rng);
      for (int i = 0; i < n; ++i)
        lines.emplace_back(products[(first + i) % products.size()],
                           std::uniform_int_distribution<int>{1, 3}(rng));
      p.key = test::unique("cluster-key");
      p.body = faults::order_body(lines).dump();
      auto headers = shoppers[p.shopper].auth();
      headers["Idempotency-Key"] = p.key;
      try {
        auto r = cl.request("POST", "/orders", p.body, headers);
        p.status = r.status;
        if (r.status == 201)
          p.order_id = r.json().at("id").get<std::string>();
        book->record(p);
        return r;
      } catch (...) {
        book->record(p);
        throw;
      }
    },
    std::move(accepted)};
}

operation read_op(std::vector<std::string> products, std::set<int> accepted) {
  return {"GET /products/{id}", 3,
          [products](http_client& cl, std::mt19937& rng) {
            auto i = std::uniform_int_distribution<std::size_t>{0, products.size() - 1}(rng);
            return cl.get("/products/" + products[i]);
          },
          std::move(accepted)};
}

/// Products whose stock is negative, or whose stock plus the units of their orders that are not
/// cancelled is not the initial stock (one statement: one snapshot).
std::string stock_mismatches(pqxx::connection& conn, const std::vector<std::string>& products) {
  std::ostringstream out;
  for (const auto& p : products) {
    pqxx::read_transaction tx{conn};
    auto row = tx.exec_params(
                   "SELECT p.stock, (SELECT coalesce(sum(l.quantity), 0) FROM "
                   "order_lines l JOIN orders o ON o.id = l.order_id WHERE "
                   "l.product_id = p.id AND o.status <> 'cancelled') FROM products p "
                   "WHERE p.id = $1",
                   p)
                 .at(0);
    auto stock = row[0].as<std::int64_t>();
    auto held = row[1].as<std::int64_t>();
    if (stock < 0 || stock + held != initial_stock)
      out << " " << p << ": " << stock << " + " << held << " != " << initial_stock << ";";
  }
  return out.str();
}

std::int64_t db_stock(pqxx::connection& conn, const std::string& product) {
  pqxx::read_transaction tx{conn};
  return tx.exec_params("SELECT stock FROM products WHERE id = $1", product)
    .at(0)[0]
    .as<std::int64_t>();
}

/// Answers that took the whole request deadline, or came after it.
std::size_t deadline_hits(const std::vector<sample>& samples, std::string& example) {
  std::size_t n = 0;
  for (const auto& s : samples)
    if (s.status == 504 || s.ms >= request_timeout_ms) {
      if (n++ == 0)
        example = s.op + " to port " + std::to_string(s.port) + " -> " + std::to_string(s.status)
                  + " after " + std::to_string(static_cast<long>(s.ms)) + " ms " + s.detail;
    }
  return n;
}

std::vector<shopper> shoppers_via(std::vector<std::unique_ptr<http_client>>& via,
                                  const std::vector<int>& nodes, int n) {
  std::vector<shopper> out;
  for (int i = 0; i < n; ++i)
    out.push_back(faults::new_shopper(*via[nodes[i % nodes.size()]]));
  return out;
}

} // namespace

TEST_CASE(
  "three nodes: every endpoint answers alike through every node, X-Emporium-Node names it, "
  "owners agree, one live actor per entity",
  "[cluster]") {
  cluster c{options()};
  auto via = clients_of(c);

  // Writes spread over the nodes: each is forwarded to its entity's owner wherever that is.
  std::vector<std::string> products;
  for (int i = 0; i < 3; ++i)
    products.push_back(faults::create_product(*via[i], 100, 1'000 + 100 * i));
  auto buyer = faults::new_shopper(*via[1]);
  auto cart = expect(via[2]->request("POST", "/carts", "", buyer.auth()), 201,
                     "POST /carts via node 2");
  auto cart_id = cart.json().at("id").get<std::string>();
  for (int i = 0; i < 3; ++i)
    expect(via[i]->request("PUT", "/carts/" + cart_id + "/items/" + products[i],
                           json{{"quantity", i + 1}}.dump(), buyer.auth()),
           200, "PUT a cart item via node " + std::to_string(i));
  auto headers = buyer.auth();
  headers["Idempotency-Key"] = test::unique("cluster-checkout");
  auto checkout_body = json{{"shipping_address", faults::address()}}.dump();
  auto checkout = expect(
    via[0]->request("POST", "/carts/" + cart_id + "/checkout", checkout_body, headers), 201,
    "checkout via node 0");
  auto order_id = checkout.json().at("id").get<std::string>();
  // The same key through another node finds the same order.
  auto replay = expect(
    via[2]->request("POST", "/carts/" + cart_id + "/checkout", checkout_body, headers), 201,
    "checkout replayed via node 2");
  CHECK(replay.json().at("id") == order_id);
  auto paid = expect(via[1]->request("POST", "/orders/" + order_id + "/payments",
                                     json{{"payment_method", "tok_visa"}}.dump(), buyer.auth()),
                     200, "payment via node 1");
  CHECK(paid.json().at("status") == "paid");
  auto shipped = expect(via[2]->request("POST", "/orders/" + order_id + "/ship", "", admin()), 200,
                        "ship via node 2");
  CHECK(shipped.json().at("status") == "shipped");

  // Every read through every node: 200, the same body and ETag, X-Emporium-Node the node asked.
  std::vector<probe> reads;
  for (const auto& p : products)
    reads.push_back({"/products/" + p, {}});
  reads.push_back({"/customers/" + buyer.id, buyer.auth()});
  reads.push_back({"/customers/" + buyer.id + "/orders", buyer.auth()});
  reads.push_back({"/carts/" + cart_id, buyer.auth()});
  reads.push_back({"/orders/" + order_id, buyer.auth()});
  for (const auto& r : reads) {
    std::vector<http_response> answers;
    for (int i = 0; i < c.size(); ++i)
      answers.push_back(via[i]->get(r.target, r.headers));
    for (int i = 0; i < c.size(); ++i) {
      INFO("GET " << r.target << " via node " << i << " -> " << show(answers[i]));
      REQUIRE(answers[i].status == 200);
      CHECK(node_of(answers[i]) == c.name(i));
      CHECK(answers[i].json() == answers[0].json());
      CHECK(answers[i].header("etag") == answers[0].header("etag"));
    }
  }
  for (const auto& p : products)
    CHECK_FALSE(via[0]->get("/products/" + p).header("etag").empty());
  // Answers that never reach an entity name the node too.
  for (int i = 0; i < c.size(); ++i)
    CHECK(node_of(via[i]->get("/healthz")) == c.name(i));

  // Every node names the same owner for every entity, one of the members.
  std::vector<std::string> ids = products;
  ids.insert(ids.end(), {buyer.id, cart_id, order_id});
  std::map<std::string, int> owned_by;
  for (const auto& id : ids) {
    auto owners = c.owners(id);
    INFO("owner of " << id);
    for (const auto& [i, o] : owners) {
      INFO("as node " << i << " sees it: '" << o << "'");
      CHECK(o == owners.begin()->second);
      CHECK(c.index_of(o) >= 0);
    }
    ++owned_by[owners.begin()->second];
  }
  std::ostringstream spread;
  for (const auto& [node, n] : owned_by)
    spread << " " << node << ": " << n;
  std::cout << "[measure] owners of " << ids.size() << " entities:" << spread.str() << std::endl;

  // One live actor per entity over the whole cluster, though each was read through every node.
  check_actors(c, "product", 3);
  check_actors(c, "customer", 1);
  check_actors(c, "cart", 1);
  check_actors(c, "order", 1);
  // Reading each entity through all three nodes forwarded most of those reads.
  CHECK(c.sum_metric("emporium_cluster_forwarded_total") > 0);
  CHECK(c.sum_metric("emporium_cluster_forward_seconds_count") > 0);
  for (int i = 0; i < c.size(); ++i) {
    INFO("node " << i);
    CHECK(c.metric(i, "emporium_cluster_serving") == 1);
    CHECK(c.metric(i, "emporium_cluster_members{state=\"up\"}") == 3);
    CHECK(c.metric(i, "emporium_cluster_members{state=\"down\"}") == 0);
    // /cluster/owner answers with the ring version of the node's view.
    auto version = c.view(i).value("ring_version", -1);
    CHECK(version >= 0);
    CHECK(c.metric(i, "emporium_cluster_ring_version") == version);
    auto owner = expect(get_via(c, i, "/cluster/owner/" + order_id), 200,
                        "GET /cluster/owner via node " + std::to_string(i));
    CHECK(owner.json().value("id", "") == order_id);
    CHECK(owner.json().value("ring_version", -2) == version);
  }
}

TEST_CASE(
  "kill -9 of one node while orders flow through all three: acknowledged orders exist once, "
  "unanswered ones are placed once on retry, stock is conserved, the dead node's entities are "
  "served again within 5 s",
  "[cluster][kill]") {
  cluster c{options()};
  auto via = clients_of(c);
  std::vector<std::string> products;
  for (int i = 0; i < 6; ++i)
    products.push_back(faults::create_product(*via[i % 3], initial_stock, 1'000 + 100 * i));
  auto shoppers = shoppers_via(via, {0, 1, 2}, 6);

  // The victim: the node owning the most products, asked before the kill.
  auto [victim, victim_products] = busiest_owner(c, products);
  REQUIRE(!victim_products.empty());
  std::vector<probe> probes;
  for (const auto& p : victim_products)
    probes.push_back({"/products/" + p, {}});
  for (const auto& s : shoppers)
    if (c.agreed_owner(s.id) == c.name(victim))
      probes.push_back({"/customers/" + s.id, s.auth()});
  std::vector<int> survivors;
  for (int i = 0; i < 3; ++i)
    if (i != victim)
      survivors.push_back(i);

  auto book = std::make_shared<order_book>();
  // A write forwarded to the dying node gets 503 (its outcome is unknown: retried below with
  // its key); a read is sent again to the new owner. No answer: the client asked the dead node.
  std::vector<operation> ops{order_op(book, shoppers, products, {201, 503, 0}),
                             read_op(products, {200, 0})};
  faults::load_generator load{c.endpoints({0, 1, 2}), ops, 6};
  load.start();
  std::this_thread::sleep_for(2500ms);

  auto killed = steady::now();
  c.kill9(victim);
  std::string last_failure;
  auto served_ms = served_again(c, probes, survivors, killed, 20s, last_failure);
  std::cout << "[measure] kill -9 of node " << victim << ": its " << probes.size()
            << " entities served again through the survivors after " << static_cast<long>(served_ms)
            << " ms" << std::endl;
  std::this_thread::sleep_for(2s); // orders keep flowing through the survivors
  load.stop();
  auto all = load.samples();

  // Every order without an answer (connection dropped, 503) is retried with its key through a
  // survivor, as a client would, until it gets one.
  std::size_t unanswered = 0, retried_201 = 0, retry_unstable = 0;
  std::vector<std::string> retry_problems;
  std::set<std::string> answered;
  std::map<std::string, std::set<std::string>> keys_of;
  std::size_t answers_201 = 0, turn = 0;
  for (auto& p : book->snapshot()) {
    if (p.status == 201) {
      ++answers_201;
      answered.insert(p.order_id);
      keys_of[p.order_id].insert(p.key);
      continue;
    }
    ++unanswered;
    auto headers = shoppers[p.shopper].auth();
    headers["Idempotency-Key"] = p.key;
    http_response r;
    for (int attempt = 0; attempt < 10; ++attempt) {
      auto& cl = *via[survivors[turn++ % survivors.size()]];
      try {
        r = cl.request("POST", "/orders", p.body, headers);
      } catch (const std::exception& e) {
        r = http_response{};
        r.body = e.what();
        cl.close();
      }
      if (r.status != 0 && r.status != 503)
        break;
      std::this_thread::sleep_for(300ms);
    }
    if (r.status != 201) {
      if (retry_problems.size() < 5)
        retry_problems.push_back("first answer " + std::to_string(p.status) + ", retried -> "
                                 + show(r));
      continue;
    }
    ++retried_201;
    ++answers_201;
    auto id = r.json().at("id").get<std::string>();
    answered.insert(id);
    keys_of[id].insert(p.key);
    auto again = via[survivors[turn++ % survivors.size()]]->request("POST", "/orders", p.body,
                                                                    headers);
    if (again.status != 201 || again.json().value("id", "") != id)
      ++retry_unstable;
  }
  std::size_t shared_ids = 0;
  for (const auto& [id, keys] : keys_of)
    if (keys.size() != 1)
      ++shared_ids;

  pqxx::connection conn{test::pg_url()};
  auto stored = orders_of(conn, shoppers);
  std::size_t missing = 0, phantom = 0;
  for (const auto& id : answered)
    if (!stored.count(id))
      ++missing;
  for (const auto& [id, status] : stored)
    if (!answered.count(id))
      ++phantom;
  auto stock = stock_mismatches(conn, products);
  std::vector<std::string> api_stock_wrong;
  for (const auto& p : products)
    for (int i : survivors) {
      auto r = get_via(c, i, "/products/" + p);
      if (r.status != 200 || r.json().at("stock").get<std::int64_t>() != db_stock(conn, p))
        api_stock_wrong.push_back(p + " via node " + std::to_string(i) + ": " + show(r));
    }

  std::string deadline_example;
  auto deadline_answers = deadline_hits(all, deadline_example);
  auto during = faults::summarize(all, steady::time_point::min(), steady::time_point::max());
  std::cout << "[measure] kill -9 load: " << all.size() << " requests {"
            << faults::format_statuses(during.by_status) << "}, longest "
            << static_cast<long>(during.longest_ms) << " ms (" << during.longest_op << "); "
            << answered.size() << " orders, " << unanswered << " retried with their key"
            << std::endl;

  INFO(c.log_paths());
  INFO("served again: " << served_ms << " ms; last failure: " << last_failure);
  CHECK(served_ms >= 0);
  CHECK(served_ms <= takeover_bound_ms);
  CHECK(answered.size() > 0);
  CHECK(answers_201 == answered.size());
  CHECK(shared_ids == 0);
  for (const auto& e : retry_problems)
    UNSCOPED_INFO("retry: " << e);
  CHECK(retried_201 == unanswered);
  CHECK(retry_unstable == 0);
  CHECK(missing == 0);
  CHECK(phantom == 0);
  INFO("stock:" << stock);
  CHECK(stock.empty());
  for (const auto& e : api_stock_wrong)
    UNSCOPED_INFO("API stock differs from PostgreSQL: " << e);
  CHECK(api_stock_wrong.empty());
  for (const auto& e : during.unexpected_examples)
    UNSCOPED_INFO("unexpected: " << e);
  CHECK(during.unexpected == 0);
  CHECK(during.bad_503 == 0);
  INFO("first answer at or past the request deadline: " << deadline_example);
  CHECK(deadline_answers == 0);
}

TEST_CASE(
  "SIGSTOP of one node for 6 s: the others serve its entities within 5 s, a write made "
  "meanwhile is what the thawed node serves, and it writes nothing stale",
  "[cluster][freeze]") {
  cluster c{options()};
  auto via = clients_of(c);
  std::vector<std::string> products;
  for (int i = 0; i < 6; ++i)
    products.push_back(faults::create_product(*via[i % 3], 100, 1'000 + 100 * i));
  auto [victim, owned] = busiest_owner(c, products);
  REQUIRE(!owned.empty());
  int other = (victim + 1) % 3;
  auto product = owned.front();
  // Its actor is live on the victim with version 1.
  auto before = expect(via[victim]->get("/products/" + product), 200, "GET via the victim");
  auto old_etag = before.header("etag");
  auto old_price = before.json().at("price_cents").get<std::int64_t>();
  std::vector<probe> probes;
  for (const auto& p : owned)
    probes.push_back({"/products/" + p, {}});

  auto frozen_at = steady::now();
  c.freeze(victim);
  // Requests that reach the frozen node wait in its socket and are handled after the thaw: a
  // read and a write against the version it knew.
  auto victim_port = c.node(victim).port();
  auto queued_read = std::async(std::launch::async, [victim_port, product] {
    try {
      return test::http_request("127.0.0.1", victim_port, "GET", "/products/" + product, "", {},
                                30s);
    } catch (const std::exception& e) {
      http_response none;
      none.body = e.what();
      return none;
    }
  });
  auto queued_write = std::async(std::launch::async, [victim_port, product, old_etag] {
    try {
      auto h = admin();
      h["If-Match"] = old_etag;
      return test::http_request("127.0.0.1", victim_port, "PATCH", "/products/" + product,
                                json{{"name", "stale write"}}.dump(), h, 30s);
    } catch (const std::exception& e) {
      http_response none;
      none.body = e.what();
      return none;
    }
  });

  std::vector<int> others{other, (victim + 2) % 3};
  std::string last_failure;
  auto served_ms = served_again(c, probes, others, frozen_at, 6s, last_failure);
  std::cout << "[measure] SIGSTOP of node " << victim << ": its " << probes.size()
            << " products served by the others after " << static_cast<long>(served_ms) << " ms"
            << std::endl;

  // A write through another node while the victim is frozen.
  // At least one attempt, even when the others never served the product.
  http_response current, patched;
  auto write_until = frozen_at + 6s;
  do {
    current = get_via(c, other, "/products/" + product);
    if (current.status == 200) {
      auto h = admin();
      h["If-Match"] = current.header("etag");
      try {
        patched = via[other]->request("PATCH", "/products/" + product,
                                      json{{"price_cents", old_price + 111}}.dump(), h);
      } catch (const std::exception& e) {
        patched = http_response{};
        patched.body = e.what();
        via[other]->close();
      }
      if (patched.status == 200)
        break;
    }
    std::this_thread::sleep_for(100ms);
  } while (steady::now() < write_until);
  auto remaining = write_until - steady::now();
  if (remaining > steady::duration::zero())
    std::this_thread::sleep_for(remaining);
  c.thaw(victim);
  auto thawed_at = steady::now();

  INFO(c.log_paths());
  INFO("served again: " << served_ms << " ms; last failure: " << last_failure);
  CHECK(served_ms >= 0);
  CHECK(served_ms <= takeover_bound_ms);
  INFO("PATCH via node " << other << " while the victim was frozen -> " << show(patched));
  REQUIRE(patched.status == 200);
  auto new_etag = patched.header("etag");
  auto new_version = version_of(new_etag);
  CHECK(new_version > version_of(old_etag));

  c.wait_converged(20s);
  std::cout << "[measure] the thawed node serving again, every node converged, "
            << static_cast<long>(elapsed_ms(thawed_at)) << " ms after SIGCONT" << std::endl;
  auto read = queued_read.get();
  auto write = queued_write.get();

  // What reached the frozen node is answered with the write made meanwhile, or refused.
  INFO("GET queued in the frozen node -> " << show(read));
  CHECK((read.status == 503 || read.status == 200));
  if (read.status == 200)
    CHECK(read.json().at("price_cents").get<std::int64_t>() == old_price + 111);
  INFO("PATCH If-Match " << old_etag << " queued in the frozen node -> " << show(write));
  CHECK((write.status == 412 || write.status == 503));

  // Serving again, the thawed node serves the write made meanwhile.
  auto after = via[victim]->get("/products/" + product);
  INFO("GET via the thawed node -> " << show(after));
  REQUIRE(after.status == 200);
  CHECK(node_of(after) == c.name(victim));
  CHECK(after.header("etag") == new_etag);
  CHECK(after.json().at("price_cents").get<std::int64_t>() == old_price + 111);
  CHECK(after.json().at("name") != "stale write");

  // And nothing stale reached PostgreSQL.
  pqxx::connection conn{test::pg_url()};
  pqxx::read_transaction tx{conn};
  auto row =
    tx.exec_params("SELECT version, price_cents, name FROM products WHERE id = $1", product).at(0);
  CHECK(row[0].as<std::int64_t>() == new_version);
  CHECK(row[1].as<std::int64_t>() == old_price + 111);
  CHECK(row[2].as<std::string>() != "stale write");
}

TEST_CASE(
  "a node killed with -9 restarts and rejoins: only its keys moved away and back, owners agree "
  "on every node, one live actor per entity throughout",
  "[cluster][rejoin]") {
  cluster c{options()};
  auto via = clients_of(c);
  constexpr int k = 9;
  std::vector<std::string> products;
  for (int i = 0; i < k; ++i)
    products.push_back(faults::create_product(*via[i % 3], 100, 1'000 + 100 * i));
  auto touch_all = [&](const std::vector<int>& nodes) {
    for (const auto& p : products)
      for (int i : nodes) {
        auto r = get_via(c, i, "/products/" + p);
        INFO("GET /products/" << p << " via node " << i << " -> " << show(r));
        REQUIRE(r.status == 200);
      }
  };
  touch_all({0, 1, 2});
  std::map<std::string, std::string> owner_before;
  for (const auto& p : products)
    owner_before[p] = c.agreed_owner(p);
  auto [victim, owned] = busiest_owner(c, products);
  REQUIRE(!owned.empty());
  check_actors(c, "product", k);

  c.kill9(victim);
  std::vector<int> survivors;
  for (int i = 0; i < 3; ++i)
    if (i != victim)
      survivors.push_back(i);
  auto down_after = c.wait_converged(20s);
  std::cout << "[measure] node " << victim << " killed: the survivors saw it down after "
            << down_after.count() << " ms" << std::endl;
  std::vector<probe> probes;
  for (const auto& p : owned)
    probes.push_back({"/products/" + p, {}});
  std::string last_failure;
  INFO(c.log_paths());
  {
    INFO("last failure: " << last_failure);
    REQUIRE(served_again(c, probes, survivors, steady::now(), 20s, last_failure) >= 0);
  }
  touch_all(survivors);
  // Rendezvous hashing: the dead node's keys went to the survivors, nothing else moved.
  for (const auto& p : products) {
    auto now = c.agreed_owner(p);
    INFO(p << " was owned by " << owner_before[p] << ", now by '" << now << "'");
    CHECK(!now.empty());
    CHECK(now != c.name(victim));
    if (owner_before[p] != c.name(victim))
      CHECK(now == owner_before[p]);
  }
  check_actors(c, "product", k);

  auto restarted = steady::now();
  c.start(victim);
  auto rejoined = c.wait_converged(20s);
  std::cout << "[measure] node " << victim << " restarted: joined and every node converged "
            << static_cast<long>(elapsed_ms(restarted)) << " ms after the restart began ("
            << rejoined.count() << " ms after it answered /healthz)" << std::endl;
  // Its keys moved back: the same owner as before, named by every node.
  for (const auto& p : products) {
    auto now = c.agreed_owner(p);
    INFO(p << " was owned by " << owner_before[p] << ", now by '" << now << "'");
    CHECK(now == owner_before[p]);
  }
  touch_all({0, 1, 2});
  check_actors(c, "product", k);
  // Every node serves the same product.
  for (const auto& p : products) {
    auto first = get_via(c, 0, "/products/" + p);
    for (int i = 1; i < 3; ++i) {
      auto r = get_via(c, i, "/products/" + p);
      INFO(p << " via node " << i << " -> " << show(r));
      CHECK(r.header("etag") == first.header("etag"));
      CHECK(r.status == 200);
      if (r.status == 200 && first.status == 200)
        CHECK(r.json() == first.json());
    }
  }
}

TEST_CASE(
  "a fourth node added while reads and orders flow takes its share of the keys with no failed "
  "request",
  "[cluster][join]") {
  // The first three name the fourth from the start: it is configured, down until it starts.
  cluster c{options(3, 1)};
  auto via = clients_of(c);
  constexpr int k = 12;
  std::vector<std::string> products;
  for (int i = 0; i < k; ++i)
    products.push_back(faults::create_product(*via[i % 3], initial_stock, 1'000 + 10 * i));
  auto shoppers = shoppers_via(via, {0, 1, 2}, 4);
  for (const auto& p : products)
    CHECK(c.agreed_owner(p) != c.name(3));

  auto book = std::make_shared<order_book>();
  std::vector<operation> ops{order_op(book, shoppers, products, {201}), read_op(products, {200})};
  faults::load_generator load{c.endpoints({0, 1, 2}), ops, 6};
  load.start();
  std::this_thread::sleep_for(1500ms);
  auto starting = steady::now();
  c.start(3);
  auto joined = c.wait_converged(20s);
  std::cout << "[measure] the fourth node joined and every node converged "
            << static_cast<long>(elapsed_ms(starting)) << " ms after its start began ("
            << joined.count() << " ms after it answered /healthz)" << std::endl;
  std::this_thread::sleep_for(2s); // the load goes on over the new ring
  load.stop();
  auto all = load.samples();
  auto w = faults::summarize(all, steady::time_point::min(), steady::time_point::max());
  std::cout << "[measure] join under load: " << w.requests << " requests {"
            << faults::format_statuses(w.by_status) << "}, longest "
            << static_cast<long>(w.longest_ms) << " ms (" << w.longest_op << ")" << std::endl;

  INFO(c.log_paths());
  CHECK(w.requests > 0);
  for (const auto& e : w.unexpected_examples)
    UNSCOPED_INFO("unexpected: " << e);
  CHECK(w.unexpected == 0);
  std::string deadline_example;
  auto deadline_answers = deadline_hits(all, deadline_example);
  INFO("first answer at or past the request deadline: " << deadline_example);
  CHECK(deadline_answers == 0);

  // Its share: every node names the same owner, and some keys are now the new node's.
  std::vector<std::string> ids = products;
  for (const auto& p : book->snapshot())
    if (p.status == 201)
      ids.push_back(p.order_id);
  for (const auto& s : shoppers)
    ids.push_back(s.id);
  std::size_t newcomer = 0, disagree = 0;
  for (const auto& id : ids) {
    auto o = c.agreed_owner(id);
    if (o.empty())
      ++disagree;
    else if (o == c.name(3))
      ++newcomer;
  }
  std::cout << "[measure] the fourth node owns " << newcomer << " of " << ids.size() << " keys"
            << std::endl;
  CHECK(disagree == 0);
  CHECK(newcomer > 0);

  // Every acknowledged order is in PostgreSQL once, none other; stock conserved.
  pqxx::connection conn{test::pg_url()};
  auto stored = orders_of(conn, shoppers);
  std::set<std::string> answered;
  for (const auto& p : book->snapshot())
    if (p.status == 201)
      answered.insert(p.order_id);
  CHECK(stored.size() == answered.size());
  for (const auto& id : answered)
    CHECK(stored.count(id) == 1);
  auto stock = stock_mismatches(conn, products);
  INFO("stock:" << stock);
  CHECK(stock.empty());

  // One live actor per product over the four nodes, each read through every one.
  for (const auto& p : products)
    for (int i = 0; i < 4; ++i) {
      auto r = get_via(c, i, "/products/" + p);
      INFO("GET /products/" << p << " via node " << i << " -> " << show(r));
      CHECK(r.status == 200);
    }
  check_actors(c, "product", k);
}

TEST_CASE(
  "a node that sees no majority serves no entity (503 with Retry-After) and passivates its "
  "actors, and serves again once a peer is back",
  "[cluster][quorum]") {
  cluster c{options()};
  auto via = clients_of(c);
  std::vector<std::string> products;
  for (int i = 0; i < 3; ++i)
    products.push_back(faults::create_product(*via[i], 100, 1'000 + 100 * i));
  for (const auto& p : products)
    expect(get_via(c, 0, "/products/" + p), 200, "GET /products/" + p + " via node 0");

  c.kill9(1);
  c.kill9(2);
  // Alone of three, node 0 stops serving once it sees the others down.
  auto lost = c.wait_converged(20s);
  std::cout << "[measure] node 0 alone: its view converged (serving false) " << lost.count()
            << " ms after the kills" << std::endl;
  auto v = c.view(0);
  CHECK(v.value("serving", true) == false);
  CHECK(v.value("live", -1) == 1);
  CHECK(c.metric(0, "emporium_cluster_serving") == 0);
  CHECK(c.metric(0, "emporium_cluster_members{state=\"up\"}") == 1);
  CHECK(c.metric(0, "emporium_cluster_members{state=\"down\"}") == 2);
  for (const auto& p : products) {
    auto r = get_via(c, 0, "/products/" + p);
    INFO("GET /products/" << p << " via node 0 alone -> " << show(r));
    CHECK(r.status == 503);
    CHECK(r.has_header("retry-after"));
    CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
    CHECK(node_of(r) == c.name(0));
  }
  check_actors(c, "product", 0);

  c.start(1);
  c.wait_converged(20s);
  for (const auto& p : products)
    expect(get_via(c, 0, "/products/" + p), 200, "GET /products/" + p + " via node 0 again");
  CHECK(c.metric(0, "emporium_cluster_serving") == 1);
}

TEST_CASE("a single node (no node port) names itself http.host:http.port in X-Emporium-Node",
          "[cluster]") {
  test::server_process srv{faults::fault_env()};
  auto expected = "127.0.0.1:" + std::to_string(srv.port());
  http_client cl{srv.host(), srv.port(), 30s};
  auto product = faults::create_product(cl, 10);
  CHECK(node_of(cl.get("/healthz")) == expected);
  CHECK(node_of(cl.get("/products/" + product)) == expected);
  CHECK(node_of(cl.get("/products/prod_00000000000000000000000000")) == expected); // a 404
}
