#include "actors/types.hpp"

#include <caf/io/middleman.hpp>

namespace emporium::actors {

caf::error make_domain_error(errc code, std::string detail, std::vector<field_error> errors) {
  if (errors.empty())
    return caf::make_error(code, std::move(detail));
  return caf::make_error(code, std::move(detail), std::move(errors));
}

failure to_failure(const caf::error& e) {
  if (!e)
    return failure{errc::internal, "no error", {}};
  if (e.category() == caf::detail::error_factory<errc>::category) {
    failure f{static_cast<errc>(e.code()), {}, {}};
    const auto& ctx = e.context();
    if (ctx.match_element<std::string>(0))
      f.detail = ctx.get_as<std::string>(0);
    if (ctx.size() > 1 && ctx.match_element<std::vector<field_error>>(1))
      f.errors = ctx.get_as<std::vector<field_error>>(1);
    return f;
  }
  if (e.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(e.code())) {
      case caf::sec::request_timeout:
        return failure{errc::timeout, "the request did not complete in time", {}};
      case caf::sec::request_receiver_down:
        return failure{errc::unavailable, "the entity could not be reached; retry", {}};
      default: break;
    }
  }
  if (e.category() == caf::atom("exit"))
    return failure{errc::unavailable, "the entity stopped; retry", {}};
  return failure{errc::internal, "internal error", {}};
}

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::emporium>();
  cfg.add_error_category(caf::detail::error_factory<errc>::category,
                         [](uint8_t code, caf::atom_value, const caf::message& ctx) {
                           return "emporium::errc(" + std::to_string(code) + ") "
                                  + caf::to_string(ctx);
                         });
}

} // namespace emporium::actors
