/// The runtime's real-time feeds: the node's event hub (one actor) and its PostgreSQL LISTEN
/// connection (one thread: persistence/event_listener.hpp).
///
/// The path of an event: the transaction that changes a product's stock or an order's status
/// writes the outbox row and, in the same statement, NOTIFYs channel `emporium_events`
/// (persistence/order_store.cpp insert_event). PostgreSQL delivers the notification to every
/// node's listener when the transaction commits, in commit order. The listener hands it to the
/// hub, which makes the event's wire forms once and hands the same shared event to every sink of
/// the topic.
///
/// The hub keeps, per topic, its subscribers (each with the last seq it delivered), a window of
/// events not yet delivered to all of them, and `seen`: the highest seq it knows was committed.
/// A subscriber gets the window's events in seq order, each once; one whose next seq is missing
/// while the topic is known to be further (a gap: notifications lost while the LISTEN connection
/// was down, or a resume with `after`) makes the hub read the missing events from the outbox, a
/// page at a time, on a database worker. Seqs are dense per entity and an entity's events commit
/// in seq order (the counter's row lock), so a seq missing from the outbox while later ones are
/// there was deleted by retention: that subscriber ends with errc::gone.
///
/// A subscription is registered before its topic's head is read, so that no event committed
/// in between is lost: events arriving meanwhile stay in the window. Head reads of one topic are
/// shared by every subscription registered before the read was sent (a burst of subscribers to
/// one product costs one or two reads).
#include "actors/runtime_impl.hpp"
#include "core/ids.hpp"
#include "persistence/event_listener.hpp"
#include "persistence/event_store.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <unordered_map>
#include <vector>

namespace emporium::actors::feeds {

namespace es = persistence::event_store;

/// Events read from the outbox in one job, at most.
constexpr int read_page = 256;
/// Topics whose heads one resync job reads, at most.
constexpr std::size_t resync_chunk = 500;
/// A failed catch-up read is tried again after this.
constexpr auto retry_after = std::chrono::seconds(1);

struct counters {
  std::atomic<std::int64_t> subscriptions{0};
  std::atomic<std::int64_t> topics{0};
  std::atomic<std::int64_t> delivered{0};
  std::atomic<std::int64_t> dropped{0};
  std::atomic<std::int64_t> replayed{0};
};

// -- messages (local only: they carry sinks and callbacks) ---------------------------------------

struct subscribe_msg {
  model::principal who;
  model::feed_topic topic;
  std::optional<std::int64_t> after;
  std::shared_ptr<model::feed_sink> sink;
  callback<std::int64_t> cb;
};

struct unsubscribe_msg {
  std::string topic;
  std::shared_ptr<model::feed_sink> sink;
};

/// Notifications received together by the listener, in commit order.
struct notified_msg {
  std::vector<es::stored_event> events;
};

/// The LISTEN connection is up (again: notifications may have been missed) or lost.
struct listening_msg {
  bool up = false;
};

/// A failed catch-up read of the topic is due again.
struct retry_msg {
  std::string topic;
};

/// The answers of the hub's database jobs.
struct head_answer {
  std::optional<es::head> head;
  std::optional<std::int64_t> oldest;
};
struct events_answer {
  std::vector<es::stored_event> events;
};
struct heads_answer {
  std::vector<std::pair<std::string, std::int64_t>> heads;
};

} // namespace emporium::actors::feeds

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::feeds::subscribe_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::feeds::unsubscribe_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::feeds::notified_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::feeds::listening_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::feeds::retry_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::feeds::head_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::feeds::events_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::actors::feeds::heads_answer)

namespace emporium::actors::feeds {

namespace {

using event_ptr = std::shared_ptr<const model::feed_event>;
constexpr auto no_seq = std::numeric_limits<std::int64_t>::max();

failure unavailable(std::string detail) {
  return failure{errc::unavailable, std::move(detail), {}};
}

bool deliver(model::feed_sink& sink, const event_ptr& e) noexcept {
  try {
    return sink.deliver(e);
  } catch (const std::exception& ex) {
    spdlog::error("feeds: a sink threw from deliver: {}", ex.what());
    return false;
  } catch (...) {
    return false;
  }
}

void end(model::feed_sink& sink, const failure& why) noexcept {
  try {
    sink.end(why);
  } catch (const std::exception& ex) {
    spdlog::error("feeds: a sink threw from end: {}", ex.what());
  } catch (...) {
  }
}

/// A subscription whose head read has not answered yet.
struct waiter {
  model::principal who;
  std::optional<std::int64_t> after;
  std::shared_ptr<model::feed_sink> sink; ///< null once unsubscribed: answered, not registered
  callback<std::int64_t> cb;
  std::uint64_t round = 0; ///< served by the topic's head read of this round or a later one
  std::int64_t floor = 0;  ///< the topic's `seen` at registration: its head is at least this
};

struct subscriber {
  std::shared_ptr<model::feed_sink> sink;
  std::int64_t last = 0; ///< the last seq delivered (or the seq it started from)
  std::int64_t want = 0; ///< the topic's head when it subscribed: it must reach at least this
};

struct topic_state {
  model::feed_topic topic;
  std::string name;
  std::vector<subscriber> subs;
  std::vector<waiter> waiters;
  /// Events some subscriber may still need, by seq.
  std::map<std::int64_t, event_ptr> window;
  std::int64_t seen = 0;   ///< the highest seq known to be committed (notifications, reads)
  std::uint64_t round = 0; ///< the round of the next head read
  bool head_reading = false;
  bool reading = false;         ///< a catch-up read is on its way
  std::uint64_t read_token = 0; ///< the current catch-up read's (hub_state::next_token)
  bool retry_due = false;       ///< a retry_msg is on its way
};

struct hub_state {
  db_pool* pool = nullptr;
  caf::timespan db_timeout{};
  std::shared_ptr<counters> stats;
  std::unordered_map<std::string, topic_state> topics;
  std::int64_t subscriptions = 0;
  /// Catch-up reads are told apart by a token unique in the hub (a topic forgotten and
  /// subscribed again does not take an older read's answer for its own).
  std::uint64_t next_token = 0;
  bool closed = false;

  void publish_gauges() {
    stats->subscriptions.store(subscriptions, std::memory_order_relaxed);
    stats->topics.store(static_cast<std::int64_t>(topics.size()), std::memory_order_relaxed);
  }

  /// Ends every subscription: the server is shutting down.
  void close() {
    if (closed)
      return;
    closed = true;
    const auto why = unavailable("the server is shutting down");
    for (auto& [name, t] : topics) {
      for (auto& s : t.subs)
        end(*s.sink, why);
      for (auto& w : t.waiters)
        run_callback(w.cb, result<std::int64_t>{why});
    }
    topics.clear();
    subscriptions = 0;
    publish_gauges();
  }

  ~hub_state() { close(); }
};

using hub_actor = caf::stateful_actor<hub_state>;

void advance(hub_actor* self, topic_state& t);

/// Drops the topic when nothing is subscribed or waiting any more.
void forget_if_idle(hub_actor* self, const std::string& name) {
  auto it = self->state.topics.find(name);
  if (it != self->state.topics.end() && it->second.subs.empty() && it->second.waiters.empty())
    self->state.topics.erase(it);
}

/// Takes the waiters of rounds up to `round` out of the topic, in their order.
std::vector<waiter> take_waiters(topic_state& t, std::uint64_t round) {
  auto& ws = t.waiters;
  auto split = std::stable_partition(ws.begin(), ws.end(),
                                     [round](const waiter& w) { return w.round > round; });
  std::vector<waiter> out(std::make_move_iterator(split), std::make_move_iterator(ws.end()));
  ws.erase(split, ws.end());
  return out;
}

void fail_waiters(std::vector<waiter>& ws, const failure& f) {
  for (auto& w : ws)
    run_callback(w.cb, result<std::int64_t>{f});
}

/// The answer to a subscription from its topic's head.
result<std::int64_t> admit(const topic_state& t, const waiter& w, const head_answer& a) {
  const bool is_order = t.topic.k == model::feed_topic::kind::order;
  if (!a.head || (is_order && !w.who.admin && w.who.customer_id != a.head->customer_id))
    return {errc::not_found, is_order ? "no such order" : "no such product"};
  const auto current = a.head->seq;
  if (w.after && *w.after > current)
    return {errc::invalid_input,
            "after is beyond the topic's current seq " + std::to_string(current)};
  if (w.after && *w.after < current && (!a.oldest || *a.oldest > *w.after + 1))
    return {errc::gone, "the events after " + std::to_string(*w.after)
                          + " are no longer kept; subscribe without after"};
  return current;
}

/// Reads the topic's head for the waiters registered so far (this round's). Leaves the topic in
/// place even when nothing is left in it (the caller forgets it).
void read_head(hub_actor* self, topic_state& t) {
  const auto round = t.round++;
  t.head_reading = true;
  auto& st = self->state;
  // Subscriptions are refused rather than queued without bound behind a busy pool.
  const int limit = std::max<int>(16, 8 * static_cast<int>(st.pool->size()));
  const auto* worker = st.pool->any_within(limit);
  if (!worker) {
    t.head_reading = false;
    auto failed = take_waiters(t, round);
    fail_waiters(failed, unavailable("too many subscriptions are waiting; retry shortly"));
    return;
  }
  auto name = t.name;
  self
    ->request(*worker, st.db_timeout,
              make_job(
                [topic = t.topic, name](persistence::backend& b) -> result<head_answer> {
                  pqxx::read_transaction tx{b.pg.connection()};
                  head_answer a;
                  a.head = es::read_head(tx, topic);
                  if (a.head)
                    a.oldest = es::oldest_seq(tx, name);
                  tx.commit();
                  return a;
                },
                st.db_timeout))
    .then(
      [self, name, round](head_answer& a) {
        auto& st = self->state;
        auto it = st.topics.find(name);
        if (it == st.topics.end())
          return;
        auto& t = it->second;
        t.head_reading = false;
        auto served = take_waiters(t, round);
        std::vector<result<std::int64_t>> answers;
        answers.reserve(served.size());
        for (auto& w : served) {
          answers.push_back(admit(t, w, a));
          const auto& r = answers.back();
          if (r && w.sink) {
            t.subs.push_back({w.sink, w.after.value_or(r.value()), r.value()});
            ++st.subscriptions;
          }
        }
        // The gauges count a subscription before its answer tells anyone it exists. Every
        // answer comes before the events: a sink gets nothing before its callback returned.
        st.publish_gauges();
        for (std::size_t i = 0; i < served.size(); ++i)
          run_callback(served[i].cb, std::move(answers[i]));
        if (!t.waiters.empty())
          read_head(self, t);
        advance(self, t);
      },
      [self, name, round](caf::error& e) {
        auto& st = self->state;
        auto it = st.topics.find(name);
        if (it == st.topics.end())
          return;
        auto& t = it->second;
        t.head_reading = false;
        auto failed = take_waiters(t, round);
        auto f = to_failure(e);
        spdlog::warn("feeds: reading {}'s head failed ({})", name, f.detail);
        fail_waiters(failed, unavailable("the feed could not be read; retry shortly"));
        if (!t.waiters.empty())
          read_head(self, t);
        forget_if_idle(self, name);
        st.publish_gauges();
      });
}

/// Reads the topic's events after `from` back from the outbox. `covers`: the topic's head as
/// known when the read is sent (the read sees every event up to it).
void read_events(hub_actor* self, topic_state& t, std::int64_t from, std::int64_t covers) {
  t.reading = true;
  const auto token = ++self->state.next_token;
  t.read_token = token;
  auto& st = self->state;
  auto name = t.name;
  self
    ->request(st.pool->any(), st.db_timeout,
              make_job(
                [name, from](persistence::backend& b) -> result<events_answer> {
                  pqxx::read_transaction tx{b.pg.connection()};
                  events_answer a{es::read_after(tx, name, from, read_page)};
                  tx.commit();
                  return a;
                },
                st.db_timeout))
    .then(
      [self, name, token, from, covers](events_answer& a) {
        auto& st = self->state;
        st.stats->replayed.fetch_add(static_cast<std::int64_t>(a.events.size()),
                                     std::memory_order_relaxed);
        auto it = st.topics.find(name);
        if (it == st.topics.end() || it->second.read_token != token)
          return;
        auto& t = it->second;
        t.reading = false;
        for (auto& e : a.events) {
          t.seen = std::max(t.seen, e.seq);
          if (!t.window.count(e.seq))
            t.window.emplace(
              e.seq, model::make_feed_event(name, e.seq, std::move(e.type), std::move(e.payload)));
        }
        // A subscriber this read covered whose next event is not in the outbox while later ones
        // are (or while the read should have seen it) will never get it: retention deleted it.
        const std::int64_t last_read = a.events.empty() ? from : a.events.back().seq;
        const bool whole = static_cast<int>(a.events.size()) < read_page;
        const auto why = failure{errc::gone, "events this feed needs are no longer kept", {}};
        auto& subs = t.subs;
        for (auto& s : subs) {
          if (s.last < from || t.window.count(s.last + 1) || s.last >= std::max(t.seen, s.want))
            continue;
          if (s.last + 1 < last_read || (whole && s.last < covers)) {
            end(*s.sink, why);
            s.sink.reset();
          }
        }
        auto gone = std::remove_if(subs.begin(), subs.end(),
                                   [](const subscriber& s) { return !s.sink; });
        st.subscriptions -= subs.end() - gone;
        subs.erase(gone, subs.end());
        advance(self, t);
      },
      [self, name, token](caf::error& e) {
        auto it = self->state.topics.find(name);
        if (it == self->state.topics.end() || it->second.read_token != token)
          return;
        auto& t = it->second;
        t.reading = false;
        spdlog::warn("feeds: reading {}'s events failed ({}); again in {} s", name,
                     to_failure(e).detail,
                     std::chrono::duration_cast<std::chrono::seconds>(retry_after).count());
        if (!t.retry_due) {
          t.retry_due = true;
          self->delayed_send(self, retry_after, retry_msg{name});
        }
      });
}

/// Delivers what each subscriber can get from the window, drops subscribers whose sink refused,
/// trims the window to what someone may still need, and reads the outbox when someone is behind
/// the topic's head with its next event missing.
void advance(hub_actor* self, topic_state& t) {
  auto& st = self->state;
  std::int64_t floor = no_seq;
  std::int64_t behind = no_seq;
  std::int64_t covers = t.seen;
  std::int64_t delivered = 0;
  bool dropped = false;
  const auto window_end = t.window.end();
  for (auto& s : t.subs) {
    for (auto it = t.window.find(s.last + 1); it != window_end && it->first == s.last + 1; ++it) {
      if (!deliver(*s.sink, it->second)) {
        s.sink.reset();
        dropped = true;
        break;
      }
      s.last = it->first;
      ++delivered;
    }
    if (!s.sink)
      continue;
    floor = std::min(floor, s.last);
    const auto target = std::max(t.seen, s.want);
    if (s.last < target) {
      behind = std::min(behind, s.last);
      covers = std::max(covers, target);
    }
  }
  st.stats->delivered.fetch_add(delivered, std::memory_order_relaxed);
  if (dropped) {
    auto gone = std::remove_if(t.subs.begin(), t.subs.end(),
                               [](const subscriber& s) { return !s.sink; });
    const auto n = t.subs.end() - gone;
    st.stats->dropped.fetch_add(n, std::memory_order_relaxed);
    st.subscriptions -= n;
    t.subs.erase(gone, t.subs.end());
  }
  for (const auto& w : t.waiters)
    floor = std::min(floor, w.floor);
  t.window.erase(t.window.begin(), t.window.upper_bound(floor));
  if (behind != no_seq && !t.reading && !t.retry_due)
    read_events(self, t, behind, covers);
  const auto name = t.name;
  forget_if_idle(self, name);
  st.publish_gauges();
}

void on_notified(hub_actor* self, std::vector<es::stored_event>& events) {
  auto& topics = self->state.topics;
  for (auto& e : events) {
    auto it = topics.find(e.entity);
    if (it == topics.end())
      continue;
    auto& t = it->second;
    t.seen = std::max(t.seen, e.seq);
    if (!t.window.count(e.seq))
      t.window.emplace(e.seq, model::make_feed_event(std::move(e.entity), e.seq, std::move(e.type),
                                                     std::move(e.payload)));
    advance(self, t);
  }
}

/// After the LISTEN connection came (back) up: reads every topic's head, so that a topic whose
/// notifications were missed is read back from the outbox.
void resync(hub_actor* self) {
  auto& st = self->state;
  std::vector<model::feed_topic> all;
  for (const auto& [name, t] : st.topics)
    all.push_back(t.topic);
  for (std::size_t i = 0; i < all.size(); i += resync_chunk) {
    std::vector<model::feed_topic> chunk(
      all.begin() + static_cast<std::ptrdiff_t>(i),
      all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), i + resync_chunk)));
    self
      ->request(st.pool->any(), st.db_timeout,
                make_job(
                  [chunk = std::move(chunk)](persistence::backend& b) -> result<heads_answer> {
                    pqxx::read_transaction tx{b.pg.connection()};
                    heads_answer a{es::read_heads(tx, chunk)};
                    tx.commit();
                    return a;
                  },
                  st.db_timeout))
      .then(
        [self](heads_answer& a) {
          for (const auto& [name, head] : a.heads) {
            auto it = self->state.topics.find(name);
            if (it == self->state.topics.end())
              continue;
            it->second.seen = std::max(it->second.seen, head);
            advance(self, it->second);
          }
        },
        [self](caf::error& e) {
          spdlog::warn("feeds: reading the topics' heads failed ({}); again in {} s",
                       to_failure(e).detail,
                       std::chrono::duration_cast<std::chrono::seconds>(retry_after).count());
          self->delayed_send(self, retry_after, listening_msg{true});
        });
  }
}

caf::behavior hub(hub_actor* self, db_pool* pool, caf::timespan db_timeout,
                  std::shared_ptr<counters> stats) {
  self->state.pool = pool;
  self->state.db_timeout = db_timeout;
  self->state.stats = std::move(stats);
  self->set_exit_handler([self](caf::exit_msg& m) {
    self->state.close();
    self->quit(m.reason);
  });
  return {
    [self](subscribe_msg& m) {
      auto& st = self->state;
      const bool is_order = m.topic.k == model::feed_topic::kind::order;
      if (!core::is_valid_id(m.topic.id, is_order ? "ord" : "prod")) {
        run_callback(m.cb, result<std::int64_t>{errc::not_found,
                                                is_order ? "no such order" : "no such product"});
        return;
      }
      if (m.after && *m.after < 0) {
        run_callback(m.cb, result<std::int64_t>{errc::invalid_input, "after must not be negative"});
        return;
      }
      auto name = m.topic.name();
      auto [it, fresh] = st.topics.try_emplace(name);
      auto& t = it->second;
      if (fresh) {
        t.topic = m.topic;
        t.name = name;
      }
      t.waiters.push_back(
        waiter{std::move(m.who), m.after, std::move(m.sink), std::move(m.cb), t.round, t.seen});
      if (!t.head_reading)
        read_head(self, t);
      forget_if_idle(self, name);
      st.publish_gauges();
    },
    [self](unsubscribe_msg& m) {
      auto& st = self->state;
      auto it = st.topics.find(m.topic);
      if (it == st.topics.end())
        return;
      auto& t = it->second;
      for (auto& w : t.waiters)
        if (w.sink == m.sink)
          w.sink.reset();
      auto gone = std::remove_if(t.subs.begin(), t.subs.end(),
                                 [&m](const subscriber& s) { return s.sink == m.sink; });
      st.subscriptions -= t.subs.end() - gone;
      t.subs.erase(gone, t.subs.end());
      advance(self, t);
    },
    [self](notified_msg& m) { on_notified(self, m.events); },
    [self](const listening_msg& m) {
      if (m.up)
        resync(self);
    },
    [self](const retry_msg& m) {
      auto it = self->state.topics.find(m.topic);
      if (it == self->state.topics.end())
        return;
      it->second.retry_due = false;
      advance(self, it->second);
    },
  };
}

} // namespace

} // namespace emporium::actors::feeds

namespace emporium::actors {

struct runtime::impl::feed_parts {
  caf::actor hub;
  std::shared_ptr<feeds::counters> stats = std::make_shared<feeds::counters>();
  std::unique_ptr<persistence::event_listener> listener;
};

void runtime::impl::start_feeds() {
  feed = std::make_shared<feed_parts>();
  feed->hub = sys.spawn(feeds::hub, &pool, db_timeout, feed->stats);
  services.push_back(feed->hub);
  feed->listener = std::make_unique<persistence::event_listener>(
    persistence::pg_options{settings.postgres.url, settings.postgres.connect_timeout_ms,
                            settings.postgres.statement_timeout_ms},
    persistence::event_listener::callbacks{
      [hub = feed->hub](std::vector<persistence::event_store::stored_event> events) {
        caf::anon_send(hub, feeds::notified_msg{std::move(events)});
      },
      [hub = feed->hub](bool up) { caf::anon_send(hub, feeds::listening_msg{up}); }});
}

void runtime::impl::stop_feeds() {
  if (feed && feed->listener)
    feed->listener->stop();
}

feed_stats runtime::impl::feed_snapshot() const {
  feed_stats s;
  if (!feed)
    return s;
  const auto& c = *feed->stats;
  s.subscriptions = c.subscriptions.load();
  s.topics = c.topics.load();
  s.delivered = c.delivered.load();
  s.dropped = c.dropped.load();
  s.replayed = c.replayed.load();
  s.listening = feed->listener && feed->listener->listening();
  s.listener_reconnects = feed->listener ? feed->listener->reconnects() : 0;
  return s;
}

void runtime::subscribe(model::principal who, model::feed_topic topic,
                        std::optional<std::int64_t> after, std::shared_ptr<model::feed_sink> sink,
                        callback<std::int64_t> cb) {
  if (impl_->stopped.load() || !impl_->feed || !sink) {
    run_callback(cb, result<std::int64_t>{errc::unavailable, "the feeds are not served"});
    return;
  }
  caf::anon_send(impl_->feed->hub, feeds::subscribe_msg{std::move(who), std::move(topic), after,
                                                        std::move(sink), std::move(cb)});
}

void runtime::unsubscribe(const model::feed_topic& topic,
                          const std::shared_ptr<model::feed_sink>& sink) {
  if (!impl_->feed || !sink)
    return;
  caf::anon_send(impl_->feed->hub, feeds::unsubscribe_msg{topic.name(), sink});
}

} // namespace emporium::actors
