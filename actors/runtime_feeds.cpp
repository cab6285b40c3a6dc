/// The runtime's real-time feeds: placeholder until the event hub lands (same session).
#include "actors/runtime_impl.hpp"

namespace emporium::actors {

void runtime::subscribe(model::principal, model::feed_topic, std::optional<std::int64_t>,
                        std::shared_ptr<model::feed_sink>, callback<std::int64_t> cb) {
  detail::invoke(cb, result<std::int64_t>{errc::unavailable, "feeds are not served yet"});
}

void runtime::unsubscribe(const model::feed_topic&, const std::shared_ptr<model::feed_sink>&) {}

} // namespace emporium::actors
