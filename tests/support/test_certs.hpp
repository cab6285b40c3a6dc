#pragma once
/// Throwaway certificate authorities for the cluster TLS tests: EC P-256 keys, written as PEM
/// files into a directory, valid from an hour ago for two days.

#include <memory>
#include <string>

namespace emporium::test {

/// The three files a node's cluster.tls_* keys name.
struct tls_files {
  std::string certificate;
  std::string key;
  std::string cafile;
};

class test_ca {
 public:
  /// Creates the CA "emporium-test-ca-<name>" and writes its certificate to dir/<name>-ca.pem.
  test_ca(std::string dir, const std::string& name);
  ~test_ca();
  test_ca(const test_ca&) = delete;
  test_ca& operator=(const test_ca&) = delete;

  /// Issues a certificate for `node` (CN=node, no extended key usage: good for both ends of a
  /// link), written with its unencrypted key to dir/<node>.pem and dir/<node>.key.
  tls_files issue(const std::string& node) const;

  /// dir/<node>.key again, encrypted with AES-256 under `passphrase`.
  std::string write_encrypted_key(const std::string& node, const std::string& passphrase) const;

  const std::string& cafile() const { return cafile_; }

 private:
  struct keys;
  std::string dir_;
  std::string cafile_;
  std::unique_ptr<keys> keys_;
};

} // namespace emporium::test
