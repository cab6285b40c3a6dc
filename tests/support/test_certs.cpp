#include "support/test_certs.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>

namespace emporium::test {

namespace {

using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using x509_ptr = std::unique_ptr<X509, decltype(&X509_free)>;

void check(bool ok, const char* what) {
  if (!ok)
    throw std::runtime_error(std::string{"test_ca: "} + what + " failed");
}

pkey_ptr new_key() {
  pkey_ptr k{EVP_EC_gen("P-256"), EVP_PKEY_free};
  check(k != nullptr, "EVP_EC_gen");
  return k;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

/// A certificate for `subject_key` named CN=cn, signed by issuer_key (the issuer's name taken
/// from `issuer`, or its own when issuer is null: self-signed).
x509_ptr make_cert(EVP_PKEY* subject_key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                   bool is_ca, long serial) {
  x509_ptr cert{X509_new(), X509_free};
  check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 2 * 24 * 3600);
  X509_set_pubkey(cert.get(), subject_key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509* issuer_cert = issuer ? issuer : cert.get();
  add_ext(cert.get(), issuer_cert, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "CA:FALSE");
  add_ext(cert.get(), issuer_cert, NID_key_usage,
          is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,keyAgreement");
  add_ext(cert.get(), issuer_cert, NID_subject_key_identifier, "hash");
  add_ext(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always");
  check(X509_sign(cert.get(), issuer_key, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

void write_file(const std::string& path, const std::function<bool(FILE*)>& write) {
  FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, ("open " + path).c_str());
  const bool ok = write(f);
  std::fclose(f);
  check(ok, ("write " + path).c_str());
}

} // namespace

struct test_ca::keys {
  pkey_ptr ca_key{nullptr, EVP_PKEY_free};
  x509_ptr ca_cert{nullptr, X509_free};
  mutable long serial = 1;
  mutable std::map<std::string, pkey_ptr> node_keys;
};

test_ca::test_ca(std::string dir, const std::string& name)
  : dir_(std::move(dir)), cafile_(dir_ + "/" + name + "-ca.pem"), keys_(std::make_unique<keys>()) {
  keys_->ca_key = new_key();
  keys_->ca_cert = make_cert(keys_->ca_key.get(), "emporium-test-ca-" + name, nullptr,
                             keys_->ca_key.get(), true, keys_->serial++);
  write_file(cafile_, [&](FILE* f) { return PEM_write_X509(f, keys_->ca_cert.get()) == 1; });
}

test_ca::~test_ca() = default;

tls_files test_ca::issue(const std::string& node) const {
  auto key = new_key();
  auto cert = make_cert(key.get(), node, keys_->ca_cert.get(), keys_->ca_key.get(), false,
                        keys_->serial++);
  tls_files out{dir_ + "/" + node + ".pem", dir_ + "/" + node + ".key", cafile_};
  write_file(out.certificate, [&](FILE* f) { return PEM_write_X509(f, cert.get()) == 1; });
  write_file(out.key, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  });
  keys_->node_keys.insert_or_assign(node, std::move(key));
  return out;
}

std::string test_ca::write_encrypted_key(const std::string& node,
                                         const std::string& passphrase) const {
  auto it = keys_->node_keys.find(node);
  check(it != keys_->node_keys.end(), "write_encrypted_key of an unknown node");
  const std::string path = dir_ + "/" + node + "-encrypted.key";
  write_file(path, [&](FILE* f) {
    return PEM_write_PrivateKey(f, it->second.get(), EVP_aes_256_cbc(),
                                reinterpret_cast<const unsigned char*>(passphrase.data()),
                                static_cast<int>(passphrase.size()), nullptr, nullptr)
           == 1;
  });
  return path;
}

} // namespace emporium::test
