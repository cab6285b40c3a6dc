// The fuzzers route with their own copy of the API's table (they do not link the actor runtime
// that http::make_router binds handlers to). This check, in every ordinary build, fails when
// the copy and the server's table differ, so that a new route gets fuzzed too.

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
  http::app a{rt, "", &s};
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
      std::printf("the server routes %s %s: add it to fuzz/request_path.cpp (api_routes and "
                  "route_and_validate)\n", m.c_str(), p.c_str());
      ++missing;
    }
  for (const auto& [m, p] : fuzzed)
    if (!server.count({m, p})) {
      std::printf("fuzz/request_path.cpp routes %s %s, the server does not\n", m.c_str(), p.c_str());
      ++missing;
    }
  if (missing == 0)
    std::printf("the fuzzers route the server's %zu routes\n", server.size());
  return missing == 0 ? 0 : 1;
}
