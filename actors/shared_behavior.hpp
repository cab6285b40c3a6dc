#pragma once
/// Entity actors whose kind shares one behavior.
///
/// CAF 0.17 gives every actor a behavior of its own: one heap object with every handler and
/// what each captures. For a product's nine handlers that is 512 bytes, a fifth of an active
/// product's memory, and a node may hold a million products active. The handlers of such a kind
/// capture nothing that belongs to one entity, so one behavior serves all of them: a handler
/// finds the entity it runs for with `current()`.
///
/// `current()` is the actor this thread is handing a message to: it is set while CAF's `consume`
/// runs for this actor (every message goes through it: requests, sends, responses and awaited
/// responses) and while the actor starts (`make_behavior`). CAF 0.17 runs one actor's turn
/// at a time on a thread and never another actor's inside it; the previous value is restored
/// anyway, exceptions included.
///
/// A kind derives `class my_entity : public shared_behavior_entity<my_entity, State, Iface>`
/// and defines:
/// - `void start()`: the activation, what a function-based entity does before it returns its
///   behavior (it may use `this`);
/// - `static behavior_type shared_behavior()`: the kind's behavior, built once, by the first
///   entity that starts. Its handlers may capture only what every entity of the kind shares
///   for the whole process (nothing per actor system either: tests run several).

#include <caf/all.hpp>

#include <utility>

namespace emporium::actors {

template <class Derived, class State, class Interface>
class shared_behavior_entity : public caf::stateful_actor<State, typename Interface::base> {
 public:
  using super = caf::stateful_actor<State, typename Interface::base>;
  using behavior_type = typename Interface::behavior_type;

  explicit shared_behavior_entity(caf::actor_config& cfg) : super(cfg) {}

  /// The entity whose message (or start) this thread is handling now.
  static Derived* current() { return current_; }

 protected:
  behavior_type make_behavior() override {
    current_scope scope{this};
    static_cast<Derived*>(this)->start();
    static const behavior_type shared = Derived::shared_behavior();
    return shared;
  }

  using super::consume;
  caf::invoke_message_result consume(caf::mailbox_element& x) override {
    current_scope scope{this};
    return super::consume(x);
  }

 private:
  class current_scope {
   public:
    explicit current_scope(shared_behavior_entity* self)
      : previous_(std::exchange(current_, static_cast<Derived*>(self))) {}
    ~current_scope() { current_ = previous_; }
    current_scope(const current_scope&) = delete;
    current_scope& operator=(const current_scope&) = delete;

   private:
    Derived* previous_;
  };

  static inline thread_local Derived* current_ = nullptr;
};

} // namespace emporium::actors
