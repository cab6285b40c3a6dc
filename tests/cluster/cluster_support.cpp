#include "cluster/cluster_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <set>
#include <sstream>
#include <thread>

namespace emporium::cluster_test {

using test::http_request;
using test::http_response;

std::string node_of(const http_response& r) {
  return r.header("x-emporium-node");
}

double elapsed_ms(steady::time_point from) {
  return std::chrono::duration<double, std::milli>(steady::now() - from).count();
}

cluster::cluster(cluster_options options) {
  int total = options.started + options.reserved;
  REQUIRE(total > 0);
  // Every node port is picked before any node starts: the peers list names them all.
  std::set<std::uint16_t> taken;
  while (static_cast<int>(node_ports_.size()) < total) {
    auto port = test::pick_free_port();
    if (taken.insert(port).second)
      node_ports_.push_back(port);
  }
  std::string peers;
  for (int i = 0; i < total; ++i)
    peers += (i ? "," : "") + name(i);
  for (int i = 0; i < total; ++i) {
    auto env = faults::fault_env({{"EMPORIUM_NODE_HOST", "127.0.0.1"},
                                  {"EMPORIUM_NODE_PORT", std::to_string(node_ports_[i])},
                                  {"EMPORIUM_PEERS", peers}});
    for (const auto& [k, v] : options.env)
      env[k] = v;
    envs_.push_back(std::move(env));
  }
  nodes_.resize(total);
  frozen_.assign(total, false);
  for (int i = 0; i < options.started; ++i)
    start(i);
  wait_converged();
}

cluster::~cluster() {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (frozen_[i] && nodes_[i])
      nodes_[i]->send_signal(SIGCONT);
  // Every node drains at the same time; the server_process destructors wait for the exits.
  for (auto& n : nodes_)
    if (n && n->running())
      n->send_signal(SIGTERM);
}

std::string cluster::name(int i) const {
  return "127.0.0.1:" + std::to_string(node_ports_.at(i));
}

int cluster::index_of(const std::string& n) const {
  for (int i = 0; i < size(); ++i)
    if (name(i) == n)
      return i;
  return -1;
}

test::server_process& cluster::node(int i) {
  if (i < 0 || i >= size() || !nodes_[i])
    FAIL("node " << i << " is not a node of this cluster that was started");
  return *nodes_[i];
}

faults::endpoint cluster::endpoint(int i) {
  return {node(i).host(), node(i).port()};
}

std::vector<int> cluster::live() {
  std::vector<int> out;
  for (int i = 0; i < size(); ++i)
    if (nodes_[i] && !frozen_[i] && nodes_[i]->running())
      out.push_back(i);
  return out;
}

std::vector<faults::endpoint> cluster::endpoints(const std::vector<int>& which) {
  std::vector<faults::endpoint> out;
  for (int i : which)
    out.push_back(endpoint(i));
  return out;
}

void cluster::kill9(int i) {
  if (frozen_[i])
    thaw(i);
  node(i).kill9();
}

void cluster::stop(int i) {
  if (frozen_[i])
    thaw(i);
  node(i).stop_term();
}

void cluster::freeze(int i) {
  node(i).send_signal(SIGSTOP);
  frozen_[i] = true;
}

void cluster::thaw(int i) {
  node(i).send_signal(SIGCONT);
  frozen_[i] = false;
}

void cluster::start(int i) {
  REQUIRE(i >= 0);
  REQUIRE(i < size());
  if (!nodes_[i])
    nodes_[i] = std::make_unique<test::server_process>(envs_[i]);
  else
    nodes_[i]->start();
}

json cluster::view(int i, ms timeout, std::string* failure) {
  try {
    auto r = http_request(node(i).host(), node(i).port(), "GET", "/cluster", "", faults::admin(),
                          timeout);
    if (r.status == 200)
      return r.json();
    if (failure)
      *failure = "GET /cluster -> " + std::to_string(r.status) + " " + r.body.substr(0, 300);
  } catch (const std::exception& e) {
    if (failure)
      *failure = std::string{"GET /cluster: no answer: "} + e.what();
  }
  return nullptr;
}

bool cluster::converged_view(int i, const json& v, std::string& why) {
  std::ostringstream out;
  if (!v.is_object()) {
    why = "no view";
    return false;
  }
  auto alive = live();
  std::set<int> up(alive.begin(), alive.end());
  if (v.value("node", "") != name(i))
    out << "node is " << v.value("node", "?") << " (expected " << name(i) << "); ";
  // Serving exactly when a majority of the configured members is live.
  bool majority = 2 * static_cast<int>(alive.size()) > size();
  if (v.value("serving", !majority) != majority)
    out << (majority ? "not serving; " : "serving without a majority; ");
  if (v.value("configured", -1) != size())
    out << "configured " << v.value("configured", -1) << " (expected " << size() << "); ";
  if (v.value("live", -1) != static_cast<int>(alive.size()))
    out << "live " << v.value("live", -1) << " (expected " << alive.size() << "); ";
  std::map<std::string, std::string> states;
  if (v.contains("members") && v["members"].is_array())
    for (const auto& m : v["members"])
      states[m.value("node", "?")] = m.value("state", "?");
  for (int j = 0; j < size(); ++j) {
    auto expected = j == i ? "self" : up.count(j) ? "up" : "down";
    auto it = states.find(name(j));
    auto got = it == states.end() ? std::string{"absent"} : it->second;
    if (got != expected)
      out << name(j) << " is " << got << " (expected " << expected << "); ";
  }
  if (static_cast<int>(states.size()) != size())
    out << states.size() << " members listed (expected " << size() << "); ";
  why = out.str();
  return why.empty();
}

ms cluster::wait_converged(ms limit) {
  auto begin = steady::now();
  std::map<int, std::string> last;
  for (;;) {
    bool all = true;
    last.clear();
    for (int i : live()) {
      std::string failure;
      auto v = view(i, ms{3'000}, &failure);
      std::string why;
      if (!converged_view(i, v, why)) {
        all = false;
        last[i] = v.is_null() ? failure : why + " view: " + v.dump();
      }
    }
    if (all)
      return std::chrono::duration_cast<ms>(steady::now() - begin);
    if (steady::now() - begin > limit) {
      std::ostringstream msg;
      msg << "the cluster did not converge within " << limit.count() << " ms:\n";
      for (const auto& [i, why] : last)
        msg << "  node " << i << " (" << name(i) << "): " << why << "\n";
      FAIL(msg.str() << logs());
    }
    std::this_thread::sleep_for(ms{100});
  }
}

std::string cluster::owner_on(int i, const std::string& id, ms timeout) {
  try {
    auto r = http_request(node(i).host(), node(i).port(), "GET", "/cluster/owner/" + id, "",
                          faults::admin(), timeout);
    if (r.status != 200)
      return "";
    return r.json().value("owner", "");
  } catch (const std::exception&) {
    return "";
  }
}

std::map<int, std::string> cluster::owners(const std::string& id) {
  std::map<int, std::string> out;
  for (int i : live())
    out[i] = owner_on(i, id);
  return out;
}

std::string cluster::agreed_owner(const std::string& id) {
  auto all = owners(id);
  if (all.empty())
    return "";
  auto first = all.begin()->second;
  for (const auto& [i, o] : all)
    if (o != first)
      return "";
  return first;
}

double cluster::metric(int i, const std::string& metric_name) {
  auto text = faults::scrape(node(i));
  if (text.empty())
    return -1;
  return faults::metric(text, metric_name);
}

double cluster::sum_metric(const std::string& metric_name) {
  double sum = 0;
  for (int i : live())
    sum += std::max(0.0, metric(i, metric_name));
  return sum;
}

double cluster::actors_active(const std::string& kind) {
  return sum_metric("emporium_actors_active{kind=\"" + kind + "\"}");
}

std::string cluster::logs(std::size_t tail_bytes) const {
  std::ostringstream out;
  for (int i = 0; i < size(); ++i) {
    if (!nodes_[i])
      continue;
    // The access log lines (one per request: the tests poll) would hide everything else.
    std::istringstream in{nodes_[i]->log_tail(std::size_t{1} << 20)};
    std::string line, kept;
    while (std::getline(in, line))
      if (line.find("\"logger\":\"access\"") == std::string::npos)
        kept += line + "\n";
    if (kept.size() > tail_bytes)
      kept = "..." + kept.substr(kept.size() - tail_bytes);
    out << "----- node " << i << " (" << name(i) << ", http port " << nodes_[i]->port() << ") log "
        << nodes_[i]->log_path() << ", without access lines:\n"
        << kept << "\n";
  }
  return out.str();
}

std::string cluster::log_paths() const {
  std::ostringstream out;
  out << "node logs:";
  for (int i = 0; i < size(); ++i)
    if (nodes_[i])
      out << " node " << i << " (" << name(i) << ") " << nodes_[i]->log_path() << ";";
  return out.str();
}

} // namespace emporium::cluster_test
