// Node links over TLS: nodes whose certificates the cluster CA signed form a cluster, a node
// with another CA's certificate neither joins it nor reaches an actor on it.
#include "actors/cluster.hpp"
#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "support/test_certs.hpp"

#include <unistd.h>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace emporium::test;
using namespace std::chrono_literals;

namespace {

constexpr int heartbeat_ms = 500;
constexpr int peer_timeout_ms = 2000;

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path()
           / ("emporium-cluster-tls-" + std::to_string(::getpid()) + "-"
              + std::to_string(++counter));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

/// A certificate of the CA "other" for `name`, with a CA file trusting both "other" and the
/// cluster's CA: the intruder would accept the cluster's nodes, only they can keep it out (and
/// its own certificate passes its start-up check).
tls_files intruder_files(const temp_dir& dir, const test_ca& cluster_ca, const test_ca& other,
                         const std::string& name) {
  auto files = other.issue(name);
  files.cafile = (dir.path / (name + "-trusts-both.pem")).string();
  std::ofstream bundle{files.cafile};
  bundle << std::ifstream{other.cafile()}.rdbuf() << std::ifstream{cluster_ca.cafile()}.rdbuf();
  return files;
}

/// The server's own log lines (not the access log), for failure messages.
std::string own_log(const server_process& server) {
  std::ifstream in{server.log_path()};
  std::string line, out;
  while (std::getline(in, line))
    if (line.find("\"logger\":\"access\"") == std::string::npos)
      out += line + "\n";
  return out;
}

std::string node_name(std::uint16_t port) {
  return "127.0.0.1:" + std::to_string(port);
}

env_map node_env(std::uint16_t node_port, const std::string& peers, const tls_files& tls) {
  return {{"EMPORIUM_NODE_HOST", "127.0.0.1"},
          {"EMPORIUM_NODE_PORT", std::to_string(node_port)},
          {"EMPORIUM_PEERS", peers},
          {"EMPORIUM_CLUSTER_HEARTBEAT_MS", std::to_string(heartbeat_ms)},
          {"EMPORIUM_CLUSTER_PEER_TIMEOUT_MS", std::to_string(peer_timeout_ms)},
          {"EMPORIUM_CLUSTER_TLS_CERTIFICATE", tls.certificate},
          {"EMPORIUM_CLUSTER_TLS_KEY", tls.key},
          {"EMPORIUM_CLUSTER_TLS_CAFILE", tls.cafile}};
}

/// The state GET /cluster on `server` gives `member` ("self", "up", "down"), "" when unlisted.
std::string member_state(server_process& server, const std::string& member) {
  http_client c{server.host(), server.port(), 2s};
  auto r = c.get("/cluster", {{"Authorization", admin_bearer()}});
  REQUIRE(r.status == 200);
  const auto view = r.json();
  for (const auto& m : view.at("members"))
    if (m.at("node") == member)
      return m.at("state").get<std::string>();
  return "";
}

/// What a dial of `port` through CAF's OpenSSL module, with the given files, answers: "actor"
/// when the link came up and the published actor was handed back, else the rendered error.
std::string dial_over_tls(std::uint16_t port, const tls_files& tls) {
  // Configured as a node is (protocol identifier, heartbeats, TLS), without joining anything.
  emporium::config::settings s;
  s.cluster.node_port = pick_free_port();
  s.cluster.heartbeat_ms = heartbeat_ms;
  s.cluster.peer_timeout_ms = peer_timeout_ms;
  s.cluster.tls_certificate = tls.certificate;
  s.cluster.tls_key = tls.key;
  s.cluster.tls_cafile = tls.cafile;
  caf::actor_system_config cfg;
  emporium::actors::configure_cluster(cfg, s);
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  std::string out = "no answer";
  self
    ->request(sys.openssl_manager().actor_handle(), 5s, caf::connect_atom_v,
              std::string{"127.0.0.1"}, port)
    .receive([&](const caf::node_id&, caf::strong_actor_ptr& ptr,
                 const std::set<std::string>&) { out = ptr ? "actor" : "no actor published"; },
             [&](caf::error& e) { out = sys.render(e); });
  return out;
}

} // namespace

TEST_CASE("cluster tls: a node with another CA's certificate never joins the cluster",
          "[cluster][tls]") {
  temp_dir dir;
  test_ca ca{dir.path.string(), "cluster"};
  test_ca other{dir.path.string(), "other"};
  const std::vector<std::uint16_t> ports{pick_free_port(), pick_free_port(), pick_free_port()};
  const std::string peers = node_name(ports[0]) + "," + node_name(ports[1]) + ","
                            + node_name(ports[2]);
  // Every node lists all three: the intruder is a configured member the others dial and that
  // dials them, so only the certificate keeps it out.
  server_process n1{node_env(ports[0], peers, ca.issue("node-1"))};
  server_process n2{node_env(ports[1], peers, ca.issue("node-2"))};
  server_process intruder{node_env(ports[2], peers, intruder_files(dir, ca, other, "intruder"))};

  // The two members of the cluster CA link up (so TLS links work at all), as their logs say ...
  const auto t0 = std::chrono::steady_clock::now();
  while (own_log(n1).find("cluster: " + node_name(ports[1]) + " is up") == std::string::npos
         || own_log(n2).find("cluster: " + node_name(ports[0]) + " is up") == std::string::npos) {
    if (std::chrono::steady_clock::now() - t0 > 20s)
      FAIL("node-1 and node-2 did not link up in 20 s\nnode-1:\n"
           << own_log(n1).substr(0, 4000) << "\nnode-2:\n"
           << own_log(n2).substr(0, 4000));
    std::this_thread::sleep_for(50ms);
  }
  // ... and for many heartbeats and peer timeouts the intruder is never up, seen from either
  // side, while its dials and theirs go on.
  const auto watch_until = std::chrono::steady_clock::now() + 6s;
  while (std::chrono::steady_clock::now() < watch_until) {
    CHECK(member_state(n1, node_name(ports[2])) == "down");
    CHECK(member_state(n2, node_name(ports[2])) == "down");
    CHECK(member_state(intruder, node_name(ports[0])) == "down");
    CHECK(member_state(intruder, node_name(ports[1])) == "down");
    std::this_thread::sleep_for(100ms);
  }
  CHECK(n1.running());
  CHECK(n2.running());
}

TEST_CASE("cluster tls: another CA's certificate gets no actor of a node, the cluster's does",
          "[cluster][tls]") {
  temp_dir dir;
  test_ca ca{dir.path.string(), "cluster"};
  test_ca other{dir.path.string(), "other"};
  const auto port = pick_free_port();
  server_process n1{node_env(port, "", ca.issue("node-1"))};

  const auto refused = dial_over_tls(port, intruder_files(dir, ca, other, "intruder"));
  INFO("the intruder's dial answered: " << refused);
  CHECK(refused != "actor");
  CHECK(refused != "no answer");
  CHECK(dial_over_tls(port, ca.issue("member")) == "actor");
  CHECK(n1.running());
}
