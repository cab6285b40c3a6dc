// Request deadlines kept by the node's deadline_keeper instead of CAF's clock, and the runtime's
// caller that asks actors from non-actor threads: a request not answered in time gets CAF's own
// request_timeout error once, an answered one gets nothing more, and a late answer is dropped.
// A real actor system (CAF's test coordinator simulates the clock, which these bypass).

#include "actors/deadlines.hpp"
#include "actors/caller.hpp"
#include "support/eventually.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <vector>

using namespace emporium;
using namespace emporium::actors;
using namespace std::chrono_literals;

namespace {

struct holder_state {
  std::vector<caf::response_promise> held;
  static inline const char* name = "holder";
};

/// Answers an int with itself plus `add`, except 0, which it holds unanswered until it is sent
/// "release" (then it answers every held request with -1).
caf::behavior holder(caf::stateful_actor<holder_state>* self, int add) {
  return {
    [self, add](int x) -> caf::result<int> {
      if (x != 0)
        return x + add;
      auto rp = self->make_response_promise();
      self->state.held.push_back(rp);
      return rp;
    },
    [self](const std::string& what) {
      if (what == "release")
        for (auto& rp : self->state.held)
          rp.deliver(-1);
      self->state.held.clear();
    },
  };
}

/// What a requester saw, in order: "answer N", "timeout", "error", or "other N" for an ordinary
/// message handled meanwhile.
struct seen {
  std::mutex mu;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard<std::mutex> lk(mu);
    events.push_back(std::move(e));
  }
  std::vector<std::string> get() {
    std::lock_guard<std::mutex> lk(mu);
    return events;
  }
};

std::string describe(const caf::error& e) {
  return e == caf::sec::request_timeout ? "timeout" : "error";
}

/// Asks `target` for each of `xs` with `timeout`, through `keeper`; `await` blocks other
/// messages until each answer (an int message is then recorded as "other N").
caf::behavior requester(caf::event_based_actor* self, deadline_keeper* keeper, caf::actor target,
                        std::vector<int> xs, caf::timespan timeout, bool await,
                        std::shared_ptr<seen> log) {
  for (int x : xs) {
    auto asked = request_within(self, keeper, target, timeout, x);
    auto ok = [log](int y) { log->add("answer " + std::to_string(y)); };
    auto err = [log](caf::error& e) { log->add(describe(e)); };
    if (await)
      asked.await(ok, err);
    else
      asked.then(ok, err);
  }
  return {
    [log](int other) { log->add("other " + std::to_string(other)); },
  };
}

/// A real actor system with a deadline keeper, and a holder to ask.
struct keeper_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  deadline_keeper keeper;
  caf::actor target = sys.spawn(holder, 1);
  std::shared_ptr<seen> log = std::make_shared<seen>();

  ~keeper_fixture() { caf::anon_send_exit(target, caf::exit_reason::user_shutdown); }
};

} // namespace

TEST_CASE_METHOD(keeper_fixture,
                 "deadlines: an unanswered request gets CAF's request_timeout once, at its "
                 "deadline, an answered one gets nothing more",
                 "[deadlines]") {
  auto silent = sys.spawn(holder, 1);
  auto silent_log = std::make_shared<seen>();
  auto start = std::chrono::steady_clock::now();
  // Answered never; answered at once; answered after the keeper has taken its deadline in.
  // (Held: an actor nobody references any more is stopped, and a deadline is not sent there.)
  auto r1 = sys.spawn(requester, &keeper, silent, std::vector<int>{0}, caf::timespan{300ms}, false,
                      silent_log);
  auto r2 = sys.spawn(requester, &keeper, target, std::vector<int>{41, 0}, caf::timespan{300ms},
                      false, log);
  std::this_thread::sleep_for(100ms);
  caf::anon_send(target, std::string{"release"});
  REQUIRE(test::eventually([&] { return silent_log->get().size() == 1; }));
  auto waited = std::chrono::steady_clock::now() - start;
  CHECK(silent_log->get() == std::vector<std::string>{"timeout"});
  CHECK(waited >= 300ms);
  CHECK(waited < 2s);
  CHECK(log->get() == std::vector<std::string>{"answer 42", "answer -1"});
  // Every deadline has passed now: only the unanswered request's expired.
  std::this_thread::sleep_for(200ms);
  CHECK(keeper.expired() == 1);
  // The held request answered late: dropped, nothing more is recorded.
  caf::anon_send(silent, std::string{"release"});
  std::this_thread::sleep_for(100ms);
  CHECK(silent_log->get().size() == 1);
  CHECK(log->get().size() == 2);
  for (const auto& a : {r1, r2, silent})
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

TEST_CASE_METHOD(keeper_fixture,
                 "deadlines: an awaited request's timeout ends the wait, and the messages held "
                 "meanwhile are handled after it",
                 "[deadlines]") {
  auto r = sys.spawn(requester, &keeper, target, std::vector<int>{0}, caf::timespan{150ms}, true,
                     log);
  caf::anon_send(r, 7);
  REQUIRE(test::eventually([&] { return log->get().size() == 2; }));
  CHECK(log->get() == std::vector<std::string>{"timeout", "other 7"});
  caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
}

/// A caller on a real actor system, a holder to call, and what the callbacks saw: "answer N",
/// "timeout", "unavailable" or "error".
struct caller_fixture : keeper_fixture {
  caller calls{sys, keeper};

  void ask(int x, caf::timespan timeout) {
    calls.ask<int>(target, x, timeout, [log = log](result<int> r) {
      if (r)
        log->add("answer " + std::to_string(r.value()));
      else if (r.error().code == errc::timeout)
        log->add("timeout");
      else
        log->add(r.error().code == errc::unavailable ? "unavailable" : "error");
    });
  }
};

TEST_CASE_METHOD(caller_fixture,
                 "deadlines: the caller answers each call exactly once: the answer, the "
                 "target's absence, or a timeout, and never a late answer after it",
                 "[deadlines]") {
  ask(0, 150ms);
  ask(1, 150ms);
  REQUIRE(test::eventually([&] { return log->get().size() == 2; }));
  CHECK(log->get() == std::vector<std::string>{"answer 2", "timeout"});
  CHECK(calls.pending() == 0);
  caf::anon_send(target, std::string{"release"});
  std::this_thread::sleep_for(100ms);
  CHECK(log->get().size() == 2);
  // A stopped target: its mailbox bounces the call at once, as unavailable.
  caf::scoped_actor self{sys};
  self->monitor(target);
  caf::anon_send_exit(target, caf::exit_reason::user_shutdown);
  self->receive([](caf::down_msg&) {});
  ask(5, 10s);
  REQUIRE(test::eventually([&] { return log->get().size() == 3; }, 2s));
  CHECK(log->get().back() == "unavailable");
  CHECK(calls.pending() == 0);
}

TEST_CASE_METHOD(caller_fixture,
                 "deadlines: once the caller stops, the calls it had are dropped unanswered and "
                 "a new one is answered unavailable at once",
                 "[deadlines]") {
  ask(0, 200ms); // held by the target
  REQUIRE(test::eventually([&] { return calls.pending() == 1; }));
  calls.stop();
  CHECK(calls.pending() == 0);
  // Neither the late answer nor the deadline runs the dropped callback.
  caf::anon_send(target, std::string{"release"});
  std::this_thread::sleep_for(400ms);
  CHECK(log->get().empty());
  ask(1, 10s);
  CHECK(log->get() == std::vector<std::string>{"unavailable"});
}
