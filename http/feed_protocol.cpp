#include "http/feed_protocol.hpp"

namespace emporium::http::feeds {

// -- registry -------------------------------------------------------------------------------------

bool registry::add(const std::string& key, transport t) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!key.empty()) {
    auto& n = per_address_[key];
    if (n >= max_)
      return false;
    ++n;
  }
  ++(t == transport::ws ? ws_ : sse_);
  return true;
}

void registry::remove(const std::string& key, transport t) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!key.empty()) {
    auto it = per_address_.find(key);
    if (it != per_address_.end() && --it->second <= 0)
      per_address_.erase(it);
  }
  --(t == transport::ws ? ws_ : sse_);
}

std::int64_t registry::open(transport t) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return t == transport::ws ? ws_ : sse_;
}

// -- channel --------------------------------------------------------------------------------------

channel::channel(transport t, std::shared_ptr<registry> r, std::string key,
                 actors::runtime& runtime, model::principal caller,
                 const config::feeds_settings& settings)
  : kind(t),
    reg(std::move(r)),
    address_key(std::move(key)),
    rt(runtime),
    who(std::move(caller)),
    cfg(settings),
    queue(std::make_shared<feed_queue>(static_cast<std::size_t>(settings.send_queue_max))) {}

channel::~channel() {
  if (sink) {
    sink->retire();
    rt.unsubscribe(topic, sink);
  }
  queue->close();
  reg->remove(address_key, kind);
}

} // namespace emporium::http::feeds
