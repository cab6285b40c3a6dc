#include "config/settings.hpp"

// The chain of sources. The keys and their sources are in registry.cpp, URLs in url.cpp, the
// rules between and on values in validation.cpp.

namespace emporium::config {

settings load(const std::optional<std::string>& toml_path,
              const std::map<std::string, std::string>& env,
              const std::vector<std::string>& assignments) {
  settings s;
  if (toml_path)
    apply_toml_file(s, *toml_path);
  apply_environment(s, env);
  for (const auto& a : assignments)
    apply_assignment(s, a);
  // A cluster shares its buckets (N nodes must not admit N times the quota); one node keeps
  // them in process.
  if (s.rate_limit.mode == "auto")
    s.rate_limit.mode = s.cluster.peers.empty() ? "local" : "redis";
  validate(s);
  return s;
}

std::string node_name(const settings& s) {
  if (s.cluster.node_port)
    return s.cluster.node_host + ":" + std::to_string(*s.cluster.node_port);
  return s.http.host + ":" + std::to_string(s.http.port);
}

} // namespace emporium::config
