#pragma once
/// The actor runtime as seen from outside actors/: plain C++ with callbacks, no CAF types, so
/// the HTTP layer neither includes CAF nor cares which node hosts an entity.
///
/// Every call returns at once; its callback runs exactly once, on an actor thread, with the
/// answer or a failure. A request that no actor answers within the deadline fails with
/// errc::timeout; an entity that died fails with errc::unavailable.

#include "actors/product_snapshot.hpp"
#include "config/settings.hpp"
#include "core/commerce_model.hpp"
#include "core/feed.hpp"
#include "core/model.hpp"
#include "core/search_model.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace emporium::actors {

template <class T>
using callback = std::function<void(result<T>)>;

/// One member as this node sees it, for GET /cluster.
struct member_status {
  std::string node;
  std::string state; ///< "self", "up" or "down"
};

/// The cluster as this node sees it (GET /cluster, /metrics). A single node is a cluster of one.
struct cluster_status {
  bool clustered = false; ///< cluster.node_port is set
  std::string node;       ///< this node's name (X-Emporium-Node)
  std::uint64_t ring_version = 0;
  bool serving = true; ///< holds the majority's lease: serves entities
  int configured = 1;  ///< members configured, this node included
  int live = 1;        ///< members up, this node included
  std::vector<member_status> members;
};

/// The forwarding between nodes.
struct forward_stats {
  std::int64_t forwarded = 0; ///< requests sent to the node owning their entity
  std::int64_t failed = 0;    ///< answered 503 at once because that node died (writes)
  std::int64_t retried = 0;   ///< reads sent again to the new owner after their node died
  std::int64_t moved = 0;     ///< requests from another node for an entity not owned here
  /// Forward latency: cumulative counts per upper bound in seconds (the last bound +Inf).
  std::vector<std::pair<double, std::int64_t>> latency_buckets;
  double latency_sum_s = 0;
  std::int64_t latency_count = 0;
};

struct kind_stats {
  std::int64_t active = 0;
  std::int64_t activations = 0;
  std::int64_t passivations = 0;
  std::int64_t crashes = 0;
};

/// The real-time feeds of this node (runtime_feeds.cpp).
struct feed_stats {
  std::int64_t subscriptions = 0; ///< open now, all topics
  std::int64_t topics = 0;        ///< topics with at least one subscription
  std::int64_t delivered = 0;     ///< events handed to sinks
  std::int64_t dropped = 0;       ///< subscriptions dropped because their sink was full
  std::int64_t replayed = 0;      ///< events read back from the outbox (resumes, gaps)
  bool listening = false;         ///< the PostgreSQL LISTEN connection is up
  std::int64_t listener_reconnects = 0;
};

struct runtime_stats {
  kind_stats products;
  std::int64_t product_snapshots = 0;      ///< published by the active product actors
  std::int64_t product_snapshot_reads = 0; ///< reads answered from a snapshot
  kind_stats customers;
  kind_stats carts;
  kind_stats orders;
  int db_in_use = 0;
  int db_waiting = 0;
  int db_size = 0;
  std::int64_t db_jobs = 0;         ///< jobs run by the pool's workers (not the committer's)
  std::int64_t db_batches = 0;      ///< runs of batchable jobs (db_pool.hpp)
  std::int64_t db_batched_jobs = 0; ///< the jobs of those runs
  std::int64_t db_retries = 0;      ///< transactions re-run after a transient failure
  std::int64_t auth_db_retries = 0; ///< likewise, on the sign-up and login workers
  int auth_waiting = 0;             ///< sign-ups and logins queued for a hashing worker
  std::int64_t signup_hashes = 0;   ///< passwords hashed for sign-ups
  int db_breaker = 0;               ///< PostgreSQL circuit: 0 closed, 1 open, 2 half-open
  std::int64_t db_breaker_opened = 0;
  int cache_breaker = 0;                       ///< Redis circuit, likewise
  std::size_t cache_pending_invalidations = 0; ///< keys whose Redis write failed, not yet deleted
  cluster_status cluster;
  forward_stats forwarding;
  feed_stats feeds;
};

class runtime {
 public:
  explicit runtime(const config::settings& s);
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  // -- products -------------------------------------------------------------------------------

  void get_product(std::string id, callback<model::product> cb);
  /// The product's current snapshot when its actor is active on this node and this node serves
  /// the key now; else null (ask get_product). Any thread, no actor message.
  snapshot_ptr current_product(const std::string& id) const;
  /// Creates a product under a new id.
  void create_product(model::product_draft draft, callback<model::product> cb);
  /// Applies `patch` if the product is still at `expected_version` (0: any version).
  void update_product(std::string id, model::product_patch patch, std::int64_t expected_version,
                      callback<model::product> cb);
  void list_products(model::product_query query, callback<model::product_page> cb);

  // -- search -----------------------------------------------------------------------------------

  /// Full-text product search with filters, facets and keyset paging (runtime_search.cpp): on a
  /// database worker, through the Redis cache of results.
  void search_products(model::search_query query, callback<model::search_result> cb);

  // -- customers and sessions (commerce) -------------------------------------------------------

  /// Hashes the password (Argon2id, on a worker) and stores the customer: conflict when the
  /// email is taken in any case.
  void create_customer(model::customer_draft draft, callback<model::customer> cb);
  void get_customer(model::principal who, std::string id, callback<model::customer> cb);
  /// The customer's orders, newest first (before_id: the cursor).
  void list_customer_orders(model::principal who, std::string customer_id,
                            std::optional<std::string> before_id, int limit,
                            callback<model::order_page> cb);
  /// Email and password → a new bearer token; the same `unauthorized` for an unknown email and
  /// a wrong password.
  void login(std::string email, std::string password, callback<model::session_grant> cb);
  /// A customer bearer token → its session: the customer and when it expires (no token in
  /// the answer); `unauthorized` when unknown or expired.
  void authenticate(std::string token, callback<model::session_grant> cb);

  // -- carts and orders -------------------------------------------------------------------------

  void create_cart(model::principal who, callback<model::cart_view> cb);
  void get_cart(model::principal who, std::string id, std::string country,
                callback<model::cart_view> cb);
  /// Sets the quantity of a product in the cart (0 removes it).
  void set_cart_item(model::principal who, std::string cart_id, std::string product_id,
                     std::int64_t quantity, std::string country, callback<model::cart_view> cb);
  void checkout(model::principal who, std::string cart_id, model::order_request req,
                callback<model::order_outcome> cb);
  void place_order(model::principal who, model::order_request req,
                   callback<model::order_outcome> cb);
  void get_order(model::principal who, std::string id, callback<model::order> cb);
  void pay_order(model::principal who, std::string id, std::string payment_method,
                 callback<model::order> cb);
  void cancel_order(model::principal who, std::string id, callback<model::order> cb);
  void ship_order(model::principal who, std::string id, callback<model::order> cb);
  void deliver_order(model::principal who, std::string id, callback<model::order> cb);

  // -- real-time feeds (runtime_feeds.cpp) -----------------------------------------------------

  /// Subscribes `sink` to `topic`. `cb` gets the topic's current seq, or a failure: not_found
  /// (no such entity, or an order that is not `who`'s: like the REST API), invalid_input (`after`
  /// beyond the current seq), gone (`after` older than the outbox keeps), unavailable.
  /// After a successful `cb`, and never before it returns, the sink gets each event exactly
  /// once and in seq order: first every event after `after` (when given) from the outbox, then
  /// every new one as it commits, on whichever node the entity lives; without `after`, only
  /// events after the current seq. It goes on until unsubscribe, until deliver returns false,
  /// or until end() is called.
  void subscribe(model::principal who, model::feed_topic topic, std::optional<std::int64_t> after,
                 std::shared_ptr<model::feed_sink> sink, callback<std::int64_t> cb);
  /// Ends the subscription of `sink` to `topic`; nothing is delivered to it afterwards (an
  /// event already being delivered may still arrive). Idempotent.
  void unsubscribe(const model::feed_topic& topic, const std::shared_ptr<model::feed_sink>& sink);

  // -- operations -----------------------------------------------------------------------------

  /// True when PostgreSQL answers.
  void check_ready(callback<bool> cb);
  /// Makes the product's actor fail, as a crash would (tests of supervision only).
  void crash_product(std::string id, callback<bool> cb);
  runtime_stats stats() const;
  /// This node's name (host:node_port; the HTTP address on a single node).
  const std::string& node() const;
  cluster_status cluster() const;
  /// The member owning the entity `id` on the current ring.
  std::string owner_of(const std::string& id) const;

  /// Stops every actor and waits for them; idempotent, also done by the destructor.
  void shutdown();

  /// Stops the runtime of a process that ends next. With at most `teardown_limit` entity actors
  /// active it is shutdown() and returns true. With more, it stops and waits for everything that
  /// may still write (services, the event listener, cluster links and every worker
  /// pool, which finish the job in hand) but leaves the entity actors as they are, and returns
  /// false: they hold nothing but copies of committed state, and stopping them one by one costs
  /// CAF a wake-up of its clock thread and a free per actor (seconds for a million). After false
  /// the caller ends the process with std::_Exit; destroying the runtime would wait for every
  /// entity, so the destructor then leaves its insides to the process's end. A cluster node
  /// (cluster.node_port set) also returns false after shutdown(): its process ends without the
  /// actor system's teardown, whose middleman stop loses state of a peer handshake in flight.
  bool stop_for_exit(std::int64_t teardown_limit);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace emporium::actors
