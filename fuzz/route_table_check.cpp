// The fuzzers route with the route table itself (http::table_router, without the actor runtime
// that http::make_router binds handlers to). This check, in every ordinary build, fails when
// the server's router and the fuzzers' differ: make_router must bind every routed entry of the
// table, and nothing else.

#include "actors/runtime.hpp"
#include "config/settings.hpp"
#include "fuzz/request_path.hpp"
#include "http/routes.hpp"

#include <cstdio>
#include <set>
#include <utility>

int main() {
  using namespace emporium;
  config::settings s;
  s.postgres.pool_size = 1;
  actors::runtime rt{s}; // starts no connection until asked
  http::app a{rt, s};
  auto r = http::make_router(a);
  std::set<std::pair<std::string, std::string>> server, fuzzed;
  for (const auto& route : r.routes())
    server.insert({route.method, route.pattern});
  for (const auto& route : fuzz::api_routes())
    fuzzed.insert(route);
  rt.shutdown();
  int missing = 0;
  for (const auto& [m, p] : server)
    if (!fuzzed.count({m, p})) {
      std::printf("the server routes %s %s, which the route table does not have\n", m.c_str(),
                  p.c_str());
      ++missing;
    }
  for (const auto& [m, p] : fuzzed)
    if (!server.count({m, p})) {
      std::printf("the route table routes %s %s, the server does not\n", m.c_str(), p.c_str());
      ++missing;
    }
  if (missing == 0)
    std::printf("the fuzzers route the server's %zu routes\n", server.size());
  return missing == 0 ? 0 : 1;
}
