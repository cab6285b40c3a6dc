#include "actors/runtime_impl.hpp"
#include "persistence/search_store.hpp"

// A search result only ever travels between a database worker and the caller of this process.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(emporium::model::search_result)

namespace emporium::actors {

void runtime::search_products(model::search_query query, callback<model::search_result> cb) {
  auto job = make_job(
    [q = std::move(query)](persistence::backend& b) {
      return result<model::search_result>{persistence::search_store::search_cached(b, q)};
    },
    impl_->db_timeout);
  impl_->ask(impl_->search.any(), std::move(job), std::move(cb));
}

} // namespace emporium::actors
