// The start-up check of the cluster's TLS files, and where the node port binds. CAF's OpenSSL
// module reads the files again for every node link and aborts the process on one it cannot use,
// so whatever it would choke on must be refused before the actor system starts.
#include "actors/cluster_tls.hpp"
#include "support/test_certs.hpp"

#include <unistd.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using emporium::actors::cluster_tls::bind_address;
using emporium::actors::cluster_tls::check_tls_files;
using emporium::config::cluster_settings;
using emporium::config::config_error;
using emporium::test::test_ca;
using emporium::test::tls_files;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path()
           / ("emporium-tls-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

cluster_settings with(const tls_files& f) {
  cluster_settings c;
  c.node_port = 7001;
  c.tls_certificate = f.certificate;
  c.tls_key = f.key;
  c.tls_cafile = f.cafile;
  return c;
}

/// The message of the config_error the check throws (fails the test when it throws none).
std::string refusal(const cluster_settings& c) {
  try {
    check_tls_files(c);
  } catch (const config_error& e) {
    return e.what();
  }
  FAIL("expected config_error, the files were accepted");
  return {};
}

} // namespace

TEST_CASE("cluster tls: a certificate and key the cluster CA signed pass the start-up check",
          "[cluster][tls]") {
  temp_dir dir;
  test_ca ca{dir.path.string(), "cluster"};
  CHECK_NOTHROW(check_tls_files(with(ca.issue("node-1"))));
}

TEST_CASE("cluster tls: a certificate of another CA is refused at start-up, naming the key",
          "[cluster][tls]") {
  temp_dir dir;
  test_ca ca{dir.path.string(), "cluster"};
  test_ca other{dir.path.string(), "other"};
  auto files = other.issue("intruder");
  files.cafile = ca.cafile();
  const auto msg = refusal(with(files));
  CHECK_THAT(msg, Catch::Contains("cluster.tls_certificate"));
  CHECK_THAT(msg, Catch::Contains("not accepted by cluster.tls_cafile"));
}

TEST_CASE("cluster tls: an encrypted key is refused at start-up instead of prompting later",
          "[cluster][tls]") {
  temp_dir dir;
  test_ca ca{dir.path.string(), "cluster"};
  auto files = ca.issue("node-1");
  files.key = ca.write_encrypted_key("node-1", "correct horse");
  CHECK_THAT(refusal(with(files)), Catch::Contains("cluster.tls_key"));
}

TEST_CASE("cluster tls: the key of another certificate is refused at start-up", "[cluster][tls]") {
  temp_dir dir;
  test_ca ca{dir.path.string(), "cluster"};
  auto files = ca.issue("node-1");
  files.key = ca.issue("node-2").key;
  CHECK_THAT(refusal(with(files)), Catch::Contains("cluster.tls_key"));
}

TEST_CASE("cluster tls: missing or unreadable files are refused at start-up, naming each key",
          "[cluster][tls]") {
  temp_dir dir;
  test_ca ca{dir.path.string(), "cluster"};
  const auto good = ca.issue("node-1");
  const auto missing = (dir.path / "missing.pem").string();
  const auto not_pem = (dir.path / "not.pem").string();
  std::ofstream(not_pem) << "not a certificate\n";

  auto c = with(good);
  c.tls_certificate = missing;
  CHECK_THAT(refusal(c), Catch::Contains("cluster.tls_certificate"));
  c = with(good);
  c.tls_key = not_pem;
  CHECK_THAT(refusal(c), Catch::Contains("cluster.tls_key"));
  c = with(good);
  c.tls_cafile = not_pem;
  CHECK_THAT(refusal(c), Catch::Contains("cluster.tls_cafile"));
}

TEST_CASE("cluster tls: a plaintext node port binds to loopback unless insecure_bind says so",
          "[cluster][tls]") {
  cluster_settings c;
  c.node_host = "10.1.2.3";
  c.node_port = 7001;
  CHECK(bind_address(c) == "127.0.0.1");
  c.insecure_bind = true;
  CHECK(bind_address(c) == "10.1.2.3");
  cluster_settings tls;
  tls.node_host = "10.1.2.3";
  tls.node_port = 7001;
  tls.tls_certificate = "a.pem";
  tls.tls_key = "a.key";
  tls.tls_cafile = "ca.pem";
  CHECK(bind_address(tls) == "10.1.2.3");
}
