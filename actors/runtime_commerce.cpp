#include "actors/cart_actor.hpp"
#include "actors/customer_actor.hpp"
#include "actors/order_actor.hpp"
#include "actors/payment_sweeper.hpp"
#include "actors/retention_service.hpp"
#include "actors/runtime_impl.hpp"
#include "core/ids.hpp"
#include "core/secret.hpp"
#include "persistence/customer_store.hpp"
#include "persistence/order_store.hpp"
#include "persistence/search_store.hpp"

#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <mutex>
#include <unordered_map>

namespace emporium::actors {

namespace customers = persistence::customer_store;
namespace orders = persistence::order_store;

namespace {

std::string session_cache_key(const std::string& token_hash) {
  return "emporium:session:" + token_hash;
}

/// The longest a session's Redis copy lives: the bound on how long a session deleted in
/// PostgreSQL can still be accepted through a copy no node was able to delete (its expiry is
/// checked on every hit, so an expired session is refused at once).
constexpr int session_copy_ttl_s = 120;

/// The generation every session copy in Redis names: a starting node deletes it (it cannot
/// know whether a process before it lost an invalidation), which retires every copy at once.
constexpr const char* session_generation_key = "emporium:session:generation";

struct session_copy {
  std::string customer_id;
  std::int64_t expires_at_ms = 0;
  std::string generation;
};

/// "customer|expires_at_ms|generation"; nothing when `text` is anything else.
std::optional<session_copy> parse_session_copy(const std::string& text) {
  auto bar = text.find('|');
  if (bar == std::string::npos || bar == 0)
    return std::nullopt;
  auto second = text.find('|', bar + 1);
  if (second == std::string::npos || second + 1 == text.size())
    return std::nullopt;
  session_copy out;
  const char* end = text.data() + second;
  auto [last, ec] = std::from_chars(text.data() + bar + 1, end, out.expires_at_ms);
  if (ec != std::errc{} || last != end)
    return std::nullopt;
  out.customer_id = text.substr(0, bar);
  out.generation = text.substr(second + 1);
  return out;
}
static_assert(session_copy_ttl_s <= persistence::longest_stale_s);

/// A hash of a random password, verified against when the email is unknown, so that both
/// failures cost the same time and say the same thing.
const std::string& decoy_hash() {
  static const std::string hash = [] {
    char out[crypto_pwhash_STRBYTES];
    auto pw = core::random_hex(16);
    if (crypto_pwhash_str(out, pw.c_str(), pw.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE)
        != 0)
      throw std::runtime_error("out of memory hashing a password");
    return std::string{out};
  }();
  return hash;
}

caf::error forbidden_without_customer() {
  return make_domain_error(errc::forbidden, "this needs a customer's token");
}

} // namespace

/// Sessions this node verified lately. An entry is believed until the session expires or for
/// `auth.session_cache_ms` after its verification, whichever comes first: a session deleted in
/// PostgreSQL (through any node) is refused here at most that long after, plus the life of its
/// Redis copy. A lookup of an unknown or no longer believed hash asks Redis, then PostgreSQL;
/// when that lookup fails for want of PostgreSQL (no session can be deleted then either), the
/// last verification stands until the session expires (last_verified).
struct runtime::impl::session_cache {
  explicit session_cache(std::int64_t believe_ms) : believe_ms(believe_ms) {}

  struct entry {
    std::string customer_id;
    std::int64_t believed_until_ms;
    std::int64_t expires_at_ms;
  };
  const std::int64_t believe_ms;
  std::mutex mtx;
  std::unordered_map<std::string, entry> entries;

  /// The session of `hash` (its customer and expiry), while it is believed.
  std::optional<model::session_grant> find(const std::string& hash) {
    if (believe_ms == 0)
      return std::nullopt;
    std::lock_guard<std::mutex> guard{mtx};
    auto it = entries.find(hash);
    if (it == entries.end())
      return std::nullopt;
    if (it->second.expires_at_ms <= now_ms()) {
      entries.erase(it);
      return std::nullopt;
    }
    if (it->second.believed_until_ms <= now_ms())
      return std::nullopt;
    return model::session_grant{{}, it->second.customer_id, it->second.expires_at_ms};
  }

  /// The session of the last verification of `hash`, believed or not, while it has not
  /// expired.
  std::optional<model::session_grant> last_verified(const std::string& hash) {
    if (believe_ms == 0)
      return std::nullopt;
    std::lock_guard<std::mutex> guard{mtx};
    auto it = entries.find(hash);
    if (it == entries.end() || it->second.expires_at_ms <= now_ms())
      return std::nullopt;
    return model::session_grant{{}, it->second.customer_id, it->second.expires_at_ms};
  }

  void put(const std::string& hash, std::string customer_id, std::int64_t expires_at_ms) {
    if (believe_ms == 0)
      return;
    std::lock_guard<std::mutex> guard{mtx};
    if (entries.size() >= 100'000)
      entries.clear(); // bounded memory; the next lookups refill from Redis
    entries[hash] = entry{std::move(customer_id), std::min(expires_at_ms, now_ms() + believe_ms),
                          expires_at_ms};
  }
};

void runtime::impl::start_commerce() {
  if (sodium_init() < 0)
    throw std::runtime_error("libsodium failed to initialise");
  sessions = std::make_shared<session_cache>(settings.auth.session_cache_ms);
  entity_env env;
  env.pool = &pool;
  env.deadlines = &deadlines;
  env.dir = &dir;
  env.settings = &settings;
  env.payments = std::shared_ptr<payment_provider>{make_simulated_provider(settings)};
  env.db_timeout = db_timeout;
  env.call_timeout = std::chrono::milliseconds(settings.http.request_timeout_ms * 4 / 5);
  env.payment_workers = &payments;
  env.snapshots = &snapshots;
  dir.add_local_customers(spawn_manager<customer_actor>(
    sys, managed("customer", entity_factory_of(customer_entity, env), customer_counters)));
  auto cart_env = env;
  cart_env.lane = db_lane::carts; // their creations and saves batch there
  dir.add_local_carts(spawn_manager<cart_actor>(
    sys, managed("cart", entity_factory_of(cart_entity, cart_env), cart_counters)));
  auto order_env = env;
  order_env.lane = db_lane::orders; // their payment intents and records batch there
  dir.add_local_orders(spawn_manager<order_actor>(
    sys, managed("order", entity_factory_of(order_entity, order_env), order_counters)));
  services.push_back(sys.spawn(payment_sweeper, env));
  // A process that stopped while Redis was out of reach may have lost invalidations, and so
  // may another node while this one finds Redis failing: at start and after every Redis failure
  // it sees, a node retires the session copies and the cached search results (by deleting their
  // generation tokens; a pending invalidation while Redis is out of reach), so nothing cached
  // before is believed. Costs one PostgreSQL read per active session and a search warm-up.
  persistence::redis_cache::retire_after_failures(session_generation_key);
  persistence::redis_cache::retire_after_failures(persistence::search_store::catalog_version_key);
  // Here, on the thread that starts the runtime (never a CAF or Asio thread), before any
  // request: at most a Redis timeout or two when Redis is out of reach.
  persistence::redis_cache cache{
    persistence::redis_options{settings.redis.url, settings.redis.timeout_ms,
                               settings.redis.breaker_threshold, settings.redis.breaker_open_ms}};
  cache.del(session_generation_key);
  persistence::search_store::catalog_changed(cache);
  services.push_back(sys.spawn(retention_service, env));
}

// -- customers and sessions -------------------------------------------------------------------

namespace {

failure email_taken() {
  return failure{
    errc::conflict, "a customer with this email exists", {{"email", "is already registered"}}};
}

} // namespace

void runtime::create_customer(model::customer_draft draft, callback<model::customer> cb) {
  auto password = core::make_secret(draft.password);
  auto* rt = impl_.get();
  // The email first, on the general pool: a known email costs one indexed read, neither an
  // Argon2id hash nor a place in the sign-up queue.
  // (The check captures its own copy: both lambdas are arguments of one call, and the order in
  // which C++ builds them is unspecified, so the second may already have moved the email.)
  auto check = [email = draft.email](persistence::backend& b) -> result<bool> {
    pqxx::nontransaction tx{b.pg.connection()}; // one statement: no BEGIN and COMMIT
    return !customers::find_credentials(tx, email).has_value();
  };
  impl_->run_db<bool>(
    std::move(check),
    [rt, email = std::move(draft.email), name = std::move(draft.name), password,
     cb = std::move(cb)](result<bool> free) {
      if (!free)
        return cb(free.error());
      if (!free.value())
        return cb(email_taken());
      auto job = make_job(
        [email, name, password,
         hashes = rt->signup_hashes](persistence::backend& b) -> result<model::customer> {
          char hash[crypto_pwhash_STRBYTES];
          if (crypto_pwhash_str(hash, password->data(), password->size(),
                                crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                crypto_pwhash_MEMLIMIT_INTERACTIVE)
              != 0)
            return failure{
              errc::unavailable, "the server is out of memory for password hashing", {}};
          hashes->fetch_add(1, std::memory_order_relaxed);
          try {
            pqxx::work tx{b.pg.connection()};
            auto c = customers::insert_customer(tx, core::new_id("cust"), email, name, hash);
            tx.commit();
            return c;
          } catch (const pqxx::unique_violation&) {
            return email_taken(); // a sign-up with the same email won the race
          }
        },
        rt->timeout);
      rt->call_bounded<model::customer>(rt->signups, rt->settings.auth.signup_queue_limit,
                                        std::move(job), cb, "sign-ups");
    },
    impl_->db_timeout);
}

void runtime::get_customer(model::principal who, std::string id, callback<model::customer> cb) {
  impl_->ask(impl_->dir.customers(id), customer_read{id, std::move(who)}, std::move(cb));
}

void runtime::list_customer_orders(model::principal who, std::string customer_id,
                                   std::optional<std::string> before_id, int limit,
                                   callback<model::order_page> cb) {
  if (!who.admin && who.customer_id != customer_id) {
    cb(failure{errc::not_found, "customer " + customer_id + " does not exist", {}});
    return;
  }
  impl_->run_db<model::order_page>(
    [customer_id = std::move(customer_id), before_id = std::move(before_id),
     limit](persistence::backend& b) -> result<model::order_page> {
      pqxx::read_transaction tx{b.pg.connection()};
      if (!customers::find_customer(tx, customer_id))
        return failure{errc::not_found, "customer " + customer_id + " does not exist", {}};
      return orders::list_orders(tx, customer_id, before_id, limit);
    },
    std::move(cb), impl_->db_timeout);
}

void runtime::login(std::string email, std::string password, callback<model::session_grant> cb) {
  auto ttl = impl_->settings.auth.session_ttl_s;
  auto job = make_job(
    [email = std::move(email), password = core::make_secret(password),
     ttl](persistence::backend& b) -> result<model::session_grant> {
      std::optional<customers::credentials> creds;
      {
        pqxx::nontransaction tx{b.pg.connection()}; // one statement: no BEGIN and COMMIT
        creds = customers::find_credentials(tx, email);
      }
      // Verified outside any transaction: no PostgreSQL session waits on the hash.
      const auto& hash = creds ? creds->password_hash : decoy_hash();
      bool ok = crypto_pwhash_str_verify(hash.c_str(), password->data(), password->size()) == 0;
      if (!creds || !ok)
        return failure{errc::unauthorized, "the email or the password is wrong", {}};
      pqxx::work tx{b.pg.connection()};
      auto token = core::random_hex(32);
      auto expires = customers::insert_session(tx, core::sha256_hex(token), creds->customer_id,
                                               ttl);
      tx.commit();
      return model::session_grant{std::move(token), creds->customer_id, expires};
    },
    impl_->timeout);
  impl_->call_bounded<model::session_grant>(impl_->logins, impl_->settings.auth.login_queue_limit,
                                            std::move(job), std::move(cb), "logins");
}

void runtime::authenticate(std::string token, callback<model::session_grant> cb) {
  auto hash = core::sha256_hex(token);
  if (auto known = impl_->sessions->find(hash)) {
    cb(std::move(*known));
    return;
  }
  auto sessions = impl_->sessions;
  impl_->run_db<model::session_grant>(
    [hash](persistence::backend& b) -> result<model::session_grant> {
      auto key = session_cache_key(hash);
      // "customer|expires_at_ms|generation", believed only under the current generation and
      // before its expiry; anything else in Redis is ignored and PostgreSQL decides.
      auto cached = b.cache.get_many({session_generation_key, key});
      const auto& generation = cached[0];
      if (generation && cached[1])
        if (auto copy = parse_session_copy(*cached[1]);
            copy && copy->generation == *generation && copy->expires_at_ms > now_ms())
          return model::session_grant{{}, copy->customer_id, copy->expires_at_ms};
      pqxx::nontransaction tx{b.pg.connection()}; // one statement: no BEGIN and COMMIT
      auto row = customers::find_session(tx, hash);
      if (!row)
        return failure{errc::unauthorized, "the token is unknown or expired", {}};
      auto ttl_s = static_cast<int>(
        std::max<std::int64_t>(1, (row->expires_at_ms - now_ms()) / 1000));
      auto current = generation ? generation
                                : b.cache.generation(session_generation_key, 24 * 3600);
      if (current)
        b.cache.set(key,
                    row->customer_id + "|" + std::to_string(row->expires_at_ms) + "|" + *current,
                    std::min({ttl_s, b.cache_ttl_s, session_copy_ttl_s}));
      return model::session_grant{{}, row->customer_id, row->expires_at_ms};
    },
    [cb = std::move(cb), sessions, hash](result<model::session_grant> r) {
      if (!r && r.error().code != errc::unauthorized)
        if (auto known = sessions->last_verified(hash))
          return cb(std::move(*known));
      if (!r)
        return cb(r.error());
      sessions->put(hash, r->customer_id, r->expires_at_ms);
      cb(std::move(r)); // the customer and the expiry; the job never puts the token in
    },
    impl_->db_timeout);
}

// -- carts and orders -------------------------------------------------------------------------

void runtime::create_cart(model::principal who, callback<model::cart_view> cb) {
  if (who.customer_id.empty()) {
    cb(to_failure(forbidden_without_customer()));
    return;
  }
  // The cart's own actor makes it, and keeps it: the PUTs that follow find it active and read
  // nothing (its manager starts it fresh, see creates_entity).
  auto id = core::new_id("cart");
  impl_->ask(impl_->dir.carts(id), cart_create{id, std::move(who)}, std::move(cb));
}

void runtime::get_cart(model::principal who, std::string id, std::string country,
                       callback<model::cart_view> cb) {
  impl_->ask(impl_->dir.carts(id), cart_read{id, std::move(who), std::move(country)},
             std::move(cb));
}

void runtime::set_cart_item(model::principal who, std::string cart_id, std::string product_id,
                            std::int64_t quantity, std::string country,
                            callback<model::cart_view> cb) {
  impl_->ask(
    impl_->dir.carts(cart_id),
    cart_set_item{cart_id, std::move(who), std::move(product_id), quantity, std::move(country)},
    std::move(cb));
}

void runtime::checkout(model::principal who, std::string cart_id, model::order_request req,
                       callback<model::order_outcome> cb) {
  impl_->ask(impl_->dir.carts(cart_id), cart_checkout{cart_id, std::move(who), std::move(req)},
             std::move(cb));
}

void runtime::place_order(model::principal who, model::order_request req,
                          callback<model::order_outcome> cb) {
  if (who.customer_id.empty()) {
    cb(to_failure(forbidden_without_customer()));
    return;
  }
  auto id = who.customer_id;
  impl_->ask(impl_->dir.customers(id), customer_place{id, std::move(req)}, std::move(cb));
}

void runtime::get_order(model::principal who, std::string id, callback<model::order> cb) {
  impl_->ask(impl_->dir.orders(id), order_read{id, std::move(who)}, std::move(cb));
}

void runtime::pay_order(model::principal who, std::string id, std::string payment_method,
                        callback<model::order> cb) {
  impl_->ask(impl_->dir.orders(id), order_pay{id, std::move(who), std::move(payment_method)},
             std::move(cb));
}

void runtime::cancel_order(model::principal who, std::string id, callback<model::order> cb) {
  impl_->ask(impl_->dir.orders(id), order_cancel{id, std::move(who)}, std::move(cb));
}

void runtime::ship_order(model::principal who, std::string id, callback<model::order> cb) {
  impl_->ask(impl_->dir.orders(id), order_ship{id, std::move(who)}, std::move(cb));
}

void runtime::deliver_order(model::principal who, std::string id, callback<model::order> cb) {
  impl_->ask(impl_->dir.orders(id), order_deliver{id, std::move(who)}, std::move(cb));
}

} // namespace emporium::actors
