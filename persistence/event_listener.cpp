#include "persistence/event_listener.hpp"

#include <spdlog/spdlog.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

namespace emporium::persistence {

namespace {

namespace es = event_store;

/// LISTENs on the channel for as long as it lives; collects what get_notifs() hands it.
class receiver : public pqxx::notification_receiver {
 public:
  receiver(pqxx::connection_base& c, std::vector<es::stored_event>& out)
    : pqxx::notification_receiver(c, es::channel), out_(out) {}
  void operator()(const std::string& payload, int) override {
    if (auto e = es::parse_notification(payload))
      out_.push_back(std::move(*e));
    else
      spdlog::warn("feeds: ignored a notification of unknown shape");
  }

 private:
  std::vector<es::stored_event>& out_;
};

} // namespace

event_listener::event_listener(pg_options opts, callbacks cbs)
  : opts_(std::move(opts)), cbs_(std::move(cbs)), wake_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  thread_ = std::thread([this] { run(); });
}

event_listener::~event_listener() {
  stop();
}

void event_listener::stop() {
  if (stopping_.exchange(true))
    return;
  std::uint64_t one = 1;
  if (wake_ >= 0) [[maybe_unused]]
    auto n = ::write(wake_, &one, sizeof one);
  if (thread_.joinable())
    thread_.join();
  if (wake_ >= 0)
    ::close(wake_);
}

bool event_listener::wait(int fd, int ms) {
  pollfd fds[2] = {{wake_, POLLIN, 0}, {fd, POLLIN, 0}};
  ::poll(fds, fd >= 0 ? 2 : 1, ms);
  return !stopping_.load();
}

void event_listener::run() {
  int attempt = 0;
  bool ever = false;
  while (!stopping_.load()) {
    pg_session session{opts_};
    std::vector<es::stored_event> batch;
    try {
      auto& conn = session.connection();
      receiver r{conn, batch}; // LISTEN emporium_events
      listening_.store(true);
      if (ever) {
        reconnects_.fetch_add(1);
        spdlog::info("feeds: listening to PostgreSQL again");
      }
      ever = true;
      attempt = 0;
      // Up: the receiver reads back whatever was committed while nobody listened.
      cbs_.on_listening(true);
      while (wait(conn.sock(), 5'000)) {
        conn.get_notifs(); // throws when the connection broke
        if (!conn.is_open())
          throw pqxx::broken_connection{"the LISTEN connection closed"};
        if (!batch.empty()) {
          cbs_.on_events(std::move(batch));
          batch.clear();
        }
      }
    } catch (const std::exception& e) {
      if (listening_.exchange(false) || attempt == 0)
        spdlog::warn("feeds: the PostgreSQL LISTEN connection is down ({}); retrying", e.what());
      if (!batch.empty())
        cbs_.on_events(std::move(batch));
      cbs_.on_listening(false);
    }
    listening_.store(false);
    session.drop();
    // Full jitter would spread the nodes' reconnects, but one listener per node is few.
    const int delay_ms = std::min(5'000, 100 << std::min(attempt, 6));
    ++attempt;
    if (!wait(-1, delay_ms))
      break;
  }
}

} // namespace emporium::persistence
