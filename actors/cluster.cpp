#include "actors/cluster.hpp"

#include "actors/deadlines.hpp"

#include "actors/cluster_tls.hpp"
#include "actors/types.hpp"
#include "config/url.hpp"
#include "core/lease.hpp"

#include <spdlog/spdlog.h>
#include <caf/io/middleman.hpp>

#include <algorithm>
#include <random>
#include <unordered_map>

#ifndef EMPORIUM_VERSION
#define EMPORIUM_VERSION "dev"
#endif

namespace emporium::actors {

using clock = std::chrono::steady_clock;

// -- counters ---------------------------------------------------------------------------------

void cluster_counters::record_latency(std::int64_t us) {
  std::size_t i = 0;
  while (i < bucket_us.size() && us > bucket_us[i])
    ++i;
  buckets[i].fetch_add(1, std::memory_order_relaxed);
  latency_sum_us.fetch_add(us, std::memory_order_relaxed);
  latency_count.fetch_add(1, std::memory_order_relaxed);
}

cluster_status cluster_counters::status() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return status_;
}

void cluster_counters::set_status(cluster_status s) {
  std::lock_guard<std::mutex> guard{mtx_};
  status_ = std::move(s);
}

// -- configuration ------------------------------------------------------------------------------

std::string cluster_protocol() {
  // The messages and their meaning belong to the build: nodes of different versions do not mix.
  return std::string{"emporium/"} + EMPORIUM_VERSION + "/cluster-1";
}

void configure_cluster(caf::actor_system_config& cfg, const config::settings& s) {
  if (!s.cluster.node_port)
    return;
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval",
          caf::timespan{std::chrono::milliseconds(s.cluster.heartbeat_ms)});
  cfg.set("middleman.connection-timeout",
          caf::timespan{std::chrono::milliseconds(s.cluster.peer_timeout_ms)});
  cfg.set("middleman.app-identifiers", std::vector<std::string>{cluster_protocol()});
  // Node links over TLS: peers must present a certificate the cluster CA signed.
  if (cluster_tls::enabled(s.cluster))
    cluster_tls::configure(cfg, s.cluster);
}

namespace {

// -- which interface a message belongs to ---------------------------------------------------------

template <class Signature>
struct input_of;

template <class In, class Out>
struct input_of<caf::typed_mpi<caf::detail::type_list<In>, Out>> {
  using type = In;
};

template <class Interface, class Msg>
struct accepts;

template <class... Sigs, class Msg>
struct accepts<caf::typed_actor<Sigs...>, Msg>
  : std::disjunction<std::is_same<typename input_of<Sigs>::type, Msg>...> {};

/// The index of the entity kind of `Msg` in directory::local_managers().
template <class Msg>
constexpr std::size_t kind_of() {
  if constexpr (accepts<product_actor, Msg>::value)
    return 0;
  else if constexpr (accepts<customer_actor, Msg>::value)
    return 1;
  else if constexpr (accepts<cart_actor, Msg>::value)
    return 2;
  else {
    static_assert(accepts<order_actor, Msg>::value, "an entity message of no known kind");
    return 3;
  }
}

/// Where the key goes now, untyped: its owner's link or the refuser, or the local manager.
caf::actor resolve(const directory& dir, std::size_t kind, const std::string& key) {
  if (auto other = dir.elsewhere(key))
    return caf::actor_cast<caf::actor>(other);
  return dir.local_managers()[kind];
}

// -- the refuser ----------------------------------------------------------------------------------

caf::error not_serving() {
  return make_domain_error(errc::unavailable,
                           "this node cannot see a majority of the cluster and serves no entity "
                           "now; retry (another node answers)");
}

template <class Signature>
struct refuse;

template <class Msg, class Out>
struct refuse<caf::typed_mpi<caf::detail::type_list<Msg>, caf::output_tuple<Out>>> {
  static auto handler() {
    return [](Msg&) -> caf::result<Out> { return not_serving(); };
  }
};

template <class Msg>
struct refuse<caf::typed_mpi<caf::detail::type_list<Msg>, caf::output_tuple<void>>> {
  static auto handler() {
    return [](Msg&) {}; // a notification: the owner reloads from PostgreSQL when it activates
  }
};

template <class... Sigs>
any_entity_actor::behavior_type refuser_behavior(caf::detail::type_list<Sigs...>) {
  return {refuse<Sigs>::handler()...};
}

/// `unused` must exist: CAF 0.17.6 spawns a function actor without arguments by binding a
/// reference to a null std::tuple<> (undefined behaviour that UBSan reports).
any_entity_actor::behavior_type refuser(any_entity_actor::pointer, int /*unused*/) {
  return refuser_behavior(any_entity_actor::signatures{});
}

// -- the link to one peer
// ---------------------------------------------------------------------------

using node_link_actor =
  any_entity_actor::extend<caf::reacts_to<link_up>, caf::reacts_to<link_down_atom>,
                           caf::reacts_to<tick_atom, std::uint64_t>>;

struct link_state {
  struct call {
    caf::response_promise rp;
    caf::message msg; ///< sent again to a new owner (reads, and "moved")
    std::string key;
    std::size_t kind = 0;
    bool read = false;
    clock::time_point start;
    int moved = 0; ///< times the peer answered "moved" while our ring still named it
    /// Sends the message to the peer's manager (typed by the message; local only).
    std::function<void(std::uint64_t id)> send;
  };

  std::string peer;
  bool up = false;
  std::vector<caf::actor> managers; ///< the peer's, by kind
  std::uint64_t next_id = 0;
  std::unordered_map<std::uint64_t, call> pending;
  const directory* dir = nullptr;
  std::shared_ptr<cluster_counters> counters;
  caf::timespan timeout{};
  deadline_keeper* deadlines = nullptr; ///< keeps the forwarded calls' deadlines
  static inline const char* name = "cluster_link";
};

using node_link_pointer = node_link_actor::stateful_pointer<link_state>;

/// A peer that answers "moved" while our ring still names it as the owner: the two rings
/// differ while a change spreads (heartbeats carry it within cluster.heartbeat_ms). The call is
/// sent again after this pause, up to max_moved times, before it is answered 503.
constexpr auto moved_pause = std::chrono::milliseconds(100);
constexpr int max_moved = 20;

/// Sends a call again to wherever its key resolves now, or answers 503 when that is this very
/// link (the rings of the two nodes disagree for the moment).
void reroute(node_link_pointer self, link_state::call& c) {
  auto target = resolve(*self->state.dir, c.kind, c.key);
  if (!target || target.address() == self->address()) {
    c.rp.deliver(make_domain_error(errc::unavailable,
                                   "the owner of " + c.key + " is changing; retry shortly"));
    return;
  }
  c.rp.delegate(target, std::move(c.msg));
}

/// The peer went down: every call it had not answered is answered now.
void fail_pending(node_link_pointer self) {
  auto& st = self->state;
  auto pending = std::move(st.pending);
  st.pending.clear();
  for (auto& [id, c] : pending) {
    if (c.read) {
      st.counters->retried.fetch_add(1, std::memory_order_relaxed);
      reroute(self, c);
    } else {
      st.counters->failed.fetch_add(1, std::memory_order_relaxed);
      c.rp.deliver(make_domain_error(errc::unavailable,
                                     "node " + st.peer
                                       + " left the cluster before answering; the outcome "
                                         "is unknown: retry with the same Idempotency-Key"));
    }
  }
}

std::optional<link_state::call> take(node_link_pointer self, std::uint64_t id) {
  auto& pending = self->state.pending;
  auto it = pending.find(id);
  if (it == pending.end())
    return std::nullopt; // answered already, when the peer went down
  auto c = std::move(it->second);
  pending.erase(it);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - c.start).count();
  self->state.counters->record_latency(us);
  return c;
}

/// The peer does not own the call's key: send it where our ring says now; when that is still
/// the peer, wait for the rings to agree and ask the peer again.
void on_moved(node_link_pointer self, std::uint64_t id) {
  auto& pending = self->state.pending;
  auto it = pending.find(id);
  if (it == pending.end())
    return;
  auto& c = it->second;
  auto target = resolve(*self->state.dir, c.kind, c.key);
  if (target && target.address() == self->address() && c.moved < max_moved) {
    ++c.moved;
    self->delayed_send(self, moved_pause, tick_atom_v, id);
    return;
  }
  auto taken = std::move(c);
  pending.erase(it);
  reroute(self, taken);
}

bool is_moved(const caf::error& e) {
  return e.category() == caf::detail::error_factory<errc>::category
         && static_cast<errc>(e.code()) == errc::moved;
}

bool is_receiver_down(const caf::error& e) {
  return e == caf::sec::request_receiver_down;
}

template <class Signature>
struct forward;

template <class Msg, class Out>
struct forward<caf::typed_mpi<caf::detail::type_list<Msg>, caf::output_tuple<Out>>> {
  static auto handler(node_link_pointer self) {
    return [self](Msg& msg) -> caf::result<Out> {
      auto& st = self->state;
      auto rp = self->make_response_promise();
      link_state::call c{rp,
                         caf::make_message(msg),
                         msg.id,
                         kind_of<Msg>(),
                         is_read_message<Msg>::value,
                         clock::now(),
                         0,
                         {}};
      if (!st.up) {
        reroute(self, c);
        return rp;
      }
      c.send = [self, msg](std::uint64_t id) {
        auto& st = self->state;
        request_within(self, st.deadlines, st.managers[kind_of<Msg>()], st.timeout, msg)
          .then(
            [self, id](Out& answer) {
              if (auto c = take(self, id))
                c->rp.deliver(std::move(answer));
            },
            [self, id](caf::error& e) {
              if (is_moved(e)) {
                on_moved(self, id);
                return;
              }
              // The peer's manager is unreachable: CAF killed its proxy when the connection
              // dropped, a moment before this link is told the peer is down. The call waits
              // for that (fail_pending: a read goes to the new owner, a write is answered
              // with its outcome unknown) instead of failing now. (Were the peer's manager
              // alone gone, not the node, the caller's own deadline answers it.)
              if (is_receiver_down(e) && self->state.up)
                return;
              if (auto c = take(self, id))
                c->rp.deliver(std::move(e));
            });
      };
      auto id = ++st.next_id;
      auto& stored = st.pending.emplace(id, std::move(c)).first->second;
      st.counters->forwarded.fetch_add(1, std::memory_order_relaxed);
      stored.send(id);
      return rp;
    };
  }
};

template <class Msg>
struct forward<caf::typed_mpi<caf::detail::type_list<Msg>, caf::output_tuple<void>>> {
  static auto handler(node_link_pointer self) {
    return [self](Msg& msg) {
      auto& st = self->state;
      if (st.up) {
        caf::anon_send(st.managers[kind_of<Msg>()], std::move(msg));
        return;
      }
      auto target = resolve(*st.dir, kind_of<Msg>(), msg.id);
      if (target && target.address() != self->address())
        caf::anon_send(target, std::move(msg));
    };
  }
};

template <class... Sigs>
node_link_actor::behavior_type link_behavior(node_link_pointer self,
                                             caf::detail::type_list<Sigs...>) {
  return {
    forward<Sigs>::handler(self)...,
    [self](tick_atom, std::uint64_t id) { // a call the peer answered "moved", asked again
      auto it = self->state.pending.find(id);
      if (it != self->state.pending.end() && self->state.up)
        it->second.send(id);
    },
    [self](link_up& up) {
      self->state.up = true;
      self->state.managers = std::move(up.managers);
    },
    [self](link_down_atom) {
      self->state.up = false;
      self->state.managers.clear();
      fail_pending(self);
    },
  };
}

node_link_actor::behavior_type node_link(node_link_pointer self, std::string peer,
                                         const directory* dir,
                                         std::shared_ptr<cluster_counters> counters,
                                         caf::timespan timeout, deadline_keeper* deadlines) {
  self->state.peer = std::move(peer);
  self->state.dir = dir;
  self->state.counters = std::move(counters);
  self->state.timeout = timeout;
  self->state.deadlines = deadlines;
  return link_behavior(self, any_entity_actor::signatures{});
}

// -- membership -----------------------------------------------------------------------------------

struct peer_state {
  std::string name;
  std::string host;
  std::uint16_t port = 0;
  bool dialer = false; ///< this node dials it (its name is the smaller)
  bool dialing = false;
  bool up = false;
  bool serving = false; ///< as it last said: only serving members own keys
  caf::actor remote;    ///< its membership actor
  std::vector<caf::actor> managers;
  /// When this node sent the latest heartbeat the peer acknowledged (core/lease.hpp).
  clock::time_point acked{};
  caf::timespan backoff{};
  node_link_actor link;
};

struct membership_state {
  const config::settings* settings = nullptr;
  directory* dir = nullptr;
  std::shared_ptr<cluster_counters> counters;
  std::string self_name;
  std::vector<peer_state> peers;
  caf::io::middleman_actor mm;
  std::uint64_t version = 0;
  bool serving = false;
  int quorum = 1;
  caf::timespan heartbeat{};
  caf::timespan lease{};
  std::minstd_rand jitter{std::random_device{}()};
  static inline const char* name = "cluster_membership";
};

using membership_pointer = caf::stateful_actor<membership_state>*;

constexpr auto first_backoff = std::chrono::milliseconds(100);
constexpr auto max_backoff = std::chrono::seconds(2);
constexpr auto dial_timeout = std::chrono::seconds(2);

node_hello own_hello(membership_pointer self) {
  return node_hello{self->state.self_name, caf::actor_cast<caf::actor>(self),
                    self->state.dir->local_managers(), self->state.serving};
}

void tell_managers(membership_pointer self) {
  for (const auto& m : self->state.dir->local_managers())
    if (m)
      self->send(m, rebalance_atom_v);
}

void publish_status(membership_pointer self) {
  auto& st = self->state;
  cluster_status s;
  s.clustered = true;
  s.node = st.self_name;
  s.ring_version = st.version;
  s.serving = st.serving;
  s.configured = static_cast<int>(st.peers.size()) + 1;
  s.members.push_back({st.self_name, "self"});
  // "up" means on the ring: connected and serving (a peer still joining owns nothing yet).
  for (const auto& p : st.peers) {
    const bool on_ring = p.up && p.serving;
    s.members.push_back({p.name, on_ring ? "up" : "down"});
    s.live += on_ring ? 1 : 0;
  }
  st.counters->set_status(std::move(s));
}

/// The live members changed: a new view, and the managers give up what they no longer own.
void membership_changed(membership_pointer self) {
  auto& st = self->state;
  auto v = std::make_shared<cluster_view>();
  v->version = ++st.version;
  v->self = st.self_name;
  std::vector<std::string> live{st.self_name};
  // A peer owns keys only once it serves: a node that has just come up (or lost the majority)
  // would refuse what it is sent.
  for (const auto& p : st.peers)
    if (p.up && p.serving) {
      live.push_back(p.name);
      v->links.emplace(p.name, any_entity_actor{p.link});
    }
  v->ring = core::ring{std::move(live)};
  spdlog::info("cluster: ring v{}: {} of {} members live", v->version, v->ring.members().size(),
               st.peers.size() + 1);
  st.dir->publish(std::move(v));
  publish_status(self);
  tell_managers(self);
}

void renew_lease(membership_pointer self);

/// Sends a heartbeat to the live peer `i`. Its acknowledgement extends this node's lease from
/// the time it was sent (core/lease.hpp), however late it is handled: one that waited in this
/// node's mailbox while the node was frozen vouches only for the time before the freeze.
void send_heartbeat(membership_pointer self, std::size_t i, const node_heartbeat& hb) {
  auto remote = self->state.peers[i].remote;
  const auto sent = clock::now();
  self->request(remote, self->state.lease, hb)
    .then(
      [self, i, remote, sent](bool accepted) {
        auto& p = self->state.peers[i];
        if (!accepted || !p.up || p.remote != remote)
          return; // it does not count this node as up, or it went down (and up) since
        p.acked = std::max(p.acked, sent);
        renew_lease(self);
      },
      [](caf::error&) {
        // Unanswered within the lease: it could no longer extend it. The peer's going down is
        // seen by its connection, not here.
      });
}

node_heartbeat own_heartbeat(membership_pointer self) {
  const auto& st = self->state;
  node_heartbeat hb{st.self_name, st.serving, {}};
  for (const auto& p : st.peers)
    if (p.up)
      hb.up.push_back(p.name);
  return hb;
}

void send_heartbeats(membership_pointer self) {
  const auto& st = self->state;
  const auto hb = own_heartbeat(self);
  for (std::size_t i = 0; i < st.peers.size(); ++i)
    if (st.peers[i].up)
      send_heartbeat(self, i, hb);
}

/// Extends (or ends) this node's lease: it serves while a majority of the configured members,
/// itself included, acknowledged a heartbeat it sent within the lease term.
void renew_lease(membership_pointer self) {
  auto& st = self->state;
  std::vector<clock::time_point> acked;
  for (const auto& p : st.peers)
    if (p.up)
      acked.push_back(p.acked);
  const auto until = core::lease_end(std::move(acked), st.quorum, st.lease);
  st.dir->set_lease(until);
  const bool serving = clock::now() < until;
  if (serving == st.serving)
    return;
  st.serving = serving;
  if (serving) {
    spdlog::info("cluster: a majority is live: serving entities");
  } else {
    spdlog::warn(
      "cluster: cannot see a majority of the {} members: serving no entity until it "
      "rejoins",
      st.peers.size() + 1);
  }
  publish_status(self);
  tell_managers(self);   // without the lease, every entity passivates
  send_heartbeats(self); // the peers add or drop this node from their rings now
}

void schedule_dial(membership_pointer self, std::size_t i) {
  auto& p = self->state.peers[i];
  p.backoff = p.backoff == caf::timespan{} ? caf::timespan{first_backoff}
                                           : std::min<caf::timespan>(p.backoff * 2, max_backoff);
  std::uniform_int_distribution<int> pct(75, 125);
  auto delay = p.backoff * pct(self->state.jitter) / 100;
  self->delayed_send(self, delay, dial_atom_v, static_cast<std::uint64_t>(i));
}

void peer_up(membership_pointer self, std::size_t i, node_hello& h) {
  auto& p = self->state.peers[i];
  if (p.up && p.remote == h.membership)
    return;
  if (p.up) { // it restarted before its old connection was seen to drop
    p.up = false;
    self->send(p.link, link_down_atom_v);
  }
  if (h.managers.size() != 4 || !h.membership) {
    spdlog::error("cluster: {} sent a malformed hello", p.name);
    return;
  }
  p.up = true;
  p.serving = h.serving;
  p.remote = std::move(h.membership);
  p.managers = std::move(h.managers);
  p.acked = {}; // the lease counts it from its first acknowledged heartbeat
  p.backoff = {};
  self->monitor(p.remote);
  self->send(p.link, link_up{p.name, p.managers});
  spdlog::info("cluster: {} is up", p.name);
  membership_changed(self);
  renew_lease(self);
  // Its acknowledgement comes within a round trip, not at the next tick. (The dialer's reaches
  // a peer that already counts it as up; the answering side's may arrive before the dialer has
  // the answer to its hello and be refused: then the next tick's counts.)
  send_heartbeat(self, i, own_heartbeat(self));
}

void peer_down(membership_pointer self, std::size_t i, const caf::error& why) {
  auto& p = self->state.peers[i];
  if (!p.up)
    return;
  p.up = false;
  p.serving = false;
  p.remote = nullptr;
  p.managers.clear();
  spdlog::warn("cluster: {} is down ({})", p.name, self->system().render(why));
  // The new view first: the link re-sends reads to the keys' new owners.
  membership_changed(self);
  self->send(p.link, link_down_atom_v);
  renew_lease(self);
  if (p.dialer)
    schedule_dial(self, i);
}

void dial(membership_pointer self, std::size_t i) {
  auto& p = self->state.peers[i];
  if (p.up || p.dialing)
    return;
  p.dialing = true;
  self->request(self->state.mm, dial_timeout, caf::connect_atom_v, p.host, p.port)
    .then(
      [self, i](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
        auto remote = caf::actor_cast<caf::actor>(ptr);
        if (!remote) {
          self->state.peers[i].dialing = false;
          schedule_dial(self, i);
          return;
        }
        self->request(remote, dial_timeout, own_hello(self))
          .then(
            [self, i](node_hello& h) {
              self->state.peers[i].dialing = false;
              if (h.node != self->state.peers[i].name) {
                spdlog::error("cluster: {} answered as {}", self->state.peers[i].name, h.node);
                schedule_dial(self, i);
                return;
              }
              peer_up(self, i, h);
            },
            [self, i](caf::error&) {
              self->state.peers[i].dialing = false;
              schedule_dial(self, i);
            });
      },
      [self, i](caf::error& e) {
        auto& p = self->state.peers[i];
        p.dialing = false;
        if (p.backoff >= caf::timespan{max_backoff})
          spdlog::debug("cluster: dialing {} failed: {}", p.name, self->system().render(e));
        schedule_dial(self, i);
      });
}

std::optional<std::size_t> peer_index(membership_pointer self, const std::string& name) {
  const auto& peers = self->state.peers;
  for (std::size_t i = 0; i < peers.size(); ++i)
    if (peers[i].name == name)
      return i;
  return std::nullopt;
}

caf::behavior membership(membership_pointer self, const config::settings* s, directory* dir,
                         std::shared_ptr<cluster_counters> counters, caf::timespan timeout,
                         deadline_keeper* deadlines) {
  auto& st = self->state;
  st.settings = s;
  st.dir = dir;
  st.counters = std::move(counters);
  st.self_name = config::node_name(*s);
  st.mm = cluster_tls::link_handle(self->system()); // dials over TLS when configured
  st.heartbeat = std::chrono::milliseconds(s->cluster.heartbeat_ms);
  st.lease = std::chrono::milliseconds(s->cluster.peer_timeout_ms - s->cluster.heartbeat_ms);
  for (const auto& text : s->cluster.peers) {
    auto hp = config::detail::parse_host_port(text);
    if (!hp)
      continue;
    auto [host, port] = *hp;
    auto name = host + ":" + std::to_string(port);
    if (name == st.self_name || peer_index(self, name))
      continue;
    peer_state p;
    p.name = name;
    p.host = host;
    p.port = port;
    p.dialer = st.self_name < name;
    p.link = self->spawn<caf::linked>(node_link, name, dir, st.counters, timeout, deadlines);
    st.peers.push_back(std::move(p));
  }
  st.quorum = static_cast<int>(st.peers.size() + 1) / 2 + 1;
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& peers = self->state.peers;
    for (std::size_t i = 0; i < peers.size(); ++i)
      if (peers[i].up && peers[i].remote.address() == dm.source)
        peer_down(self, i, dm.reason);
  });
  membership_changed(self);
  renew_lease(self);
  for (std::size_t i = 0; i < st.peers.size(); ++i)
    if (st.peers[i].dialer)
      self->send(self, dial_atom_v, static_cast<std::uint64_t>(i));
  self->send(self, tick_atom_v);
  return {
    [self](dial_atom, std::uint64_t i) {
      if (i < self->state.peers.size())
        dial(self, i);
    },
    [self](node_hello& h) -> caf::result<node_hello> {
      auto i = peer_index(self, h.node);
      if (!i) {
        spdlog::warn("cluster: refused {}: not a configured member", h.node);
        return make_domain_error(errc::forbidden, h.node + " is not a member of this cluster");
      }
      peer_up(self, *i, h);
      return own_hello(self);
    },
    // The answer acknowledges the heartbeat: true when this node counts the sender as up.
    [self](node_heartbeat& hb) -> bool {
      auto& st = self->state;
      auto i = peer_index(self, hb.node);
      if (!i || !st.peers[*i].up)
        return false;
      auto& p = st.peers[*i];
      if (p.serving != hb.serving) {
        p.serving = hb.serving;
        membership_changed(self);
      }
      // A member the sender sees and this node does not: dial it now rather than at the end
      // of a back-off, so that the rings of the two agree soon.
      for (const auto& name : hb.up)
        if (auto j = peer_index(self, name)) {
          auto& q = st.peers[*j];
          if (q.dialer && !q.up && !q.dialing) {
            q.backoff = {};
            dial(self, *j);
          }
        }
      return true;
    },
    [self](tick_atom) {
      send_heartbeats(self);
      renew_lease(self);
      self->delayed_send(self, self->state.heartbeat, tick_atom_v);
    },
  };
}

} // namespace

caf::actor start_cluster(caf::actor_system& sys, const config::settings& s, directory& dir,
                         std::shared_ptr<cluster_counters> counters, caf::timespan timeout,
                         deadline_keeper* deadlines) {
  dir.enable_cluster(sys.spawn(refuser, 0));
  auto m = sys.spawn(membership, &s, &dir, std::move(counters), timeout, deadlines);
  const bool tls = cluster_tls::enabled(s.cluster);
  const std::string bind = cluster_tls::bind_address(s.cluster);
  auto port = cluster_tls::publish(sys, m, *s.cluster.node_port, s.cluster);
  if (!port) {
    caf::anon_send_exit(m, caf::exit_reason::user_shutdown);
    throw std::runtime_error("cluster: cannot listen on " + bind + ":"
                             + std::to_string(*s.cluster.node_port) + ": "
                             + sys.render(port.error()));
  }
  spdlog::info("cluster: node {} listening on {}:{} ({}), {} peers", config::node_name(s), bind,
               *port, tls ? "TLS" : "plaintext", s.cluster.peers.size());
  return m;
}

} // namespace emporium::actors
