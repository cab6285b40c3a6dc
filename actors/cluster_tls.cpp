#include "actors/cluster_tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>

#include <memory>

namespace emporium::actors::cluster_tls {

namespace {

/// The passphrase callback while checking: none, so an encrypted key fails here instead of
/// OpenSSL's default callback prompting on the terminal from the multiplexer thread later.
int no_passphrase(char*, int, int, void*) {
  return 0;
}

std::string openssl_errors() {
  std::string out;
  while (auto e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += out.empty() ? "" : "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error reported" : out;
}

[[noreturn]] void refuse(const char* key, const std::string& path, const std::string& what) {
  throw config::config_error("config: " + std::string{key} + ": '" + path + "' " + what);
}

/// Verifies `cert` (with the chain the certificate file carried) against the CA store as a
/// peer will: for the accepting end (server purpose) and the dialling end (client purpose).
void verify_own_certificate(SSL_CTX* ctx, const config::cluster_settings& c) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx, &chain);
  for (int purpose : {X509_PURPOSE_SSL_SERVER, X509_PURPOSE_SSL_CLIENT}) {
    std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> vctx{X509_STORE_CTX_new(),
                                                                         X509_STORE_CTX_free};
    if (!vctx || X509_STORE_CTX_init(vctx.get(), SSL_CTX_get_cert_store(ctx), cert, chain) != 1)
      refuse("cluster.tls_certificate", c.tls_certificate,
             "could not be checked: " + openssl_errors());
    X509_STORE_CTX_set_purpose(vctx.get(), purpose);
    if (X509_verify_cert(vctx.get()) != 1)
      refuse("cluster.tls_certificate", c.tls_certificate,
             std::string{"is not accepted by cluster.tls_cafile as a "}
               + (purpose == X509_PURPOSE_SSL_SERVER ? "server" : "client") + " certificate: "
               + X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx.get())));
  }
}

} // namespace

bool enabled(const config::cluster_settings& c) {
  return !c.tls_certificate.empty() && !c.tls_key.empty() && !c.tls_cafile.empty();
}

void check_tls_files(const config::cluster_settings& c) {
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{SSL_CTX_new(TLS_method()), SSL_CTX_free};
  if (!ctx)
    throw config::config_error("config: cluster.tls_*: no OpenSSL context: " + openssl_errors());
  SSL_CTX_set_default_passwd_cb(ctx.get(), no_passphrase);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), c.tls_certificate.c_str()) != 1)
    refuse("cluster.tls_certificate", c.tls_certificate,
           "is not a readable PEM certificate: " + openssl_errors());
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), c.tls_key.c_str(), SSL_FILETYPE_PEM) != 1
      || SSL_CTX_check_private_key(ctx.get()) != 1)
    refuse(
      "cluster.tls_key", c.tls_key,
      "is not a readable, unencrypted PEM key of cluster.tls_certificate: " + openssl_errors());
  if (SSL_CTX_load_verify_locations(ctx.get(), c.tls_cafile.c_str(), nullptr) != 1)
    refuse("cluster.tls_cafile", c.tls_cafile,
           "is not a readable PEM file of CA certificates: " + openssl_errors());
  verify_own_certificate(ctx.get(), c);
}

void configure(caf::actor_system_config& cfg, const config::cluster_settings& c) {
  check_tls_files(c);
  cfg.load<caf::openssl::manager>();
  // Any of these set turns on certificate authentication: both ends present a certificate and
  // verify the other's chain against the CA file.
  cfg.set("openssl.certificate", c.tls_certificate);
  cfg.set("openssl.key", c.tls_key);
  cfg.set("openssl.cafile", c.tls_cafile);
}

std::string bind_address(const config::cluster_settings& c) {
  return enabled(c) || c.insecure_bind ? c.node_host : std::string{"127.0.0.1"};
}

caf::io::middleman_actor link_handle(caf::actor_system& sys) {
  return sys.has_openssl_manager() ? sys.openssl_manager().actor_handle()
                                   : sys.middleman().actor_handle();
}

caf::expected<std::uint16_t> publish(caf::actor_system& sys, const caf::actor& node,
                                     std::uint16_t port, const config::cluster_settings& c) {
  const auto addr = bind_address(c);
  if (sys.has_openssl_manager())
    return caf::openssl::publish(node, port, addr.c_str(), true);
  return sys.middleman().publish(node, port, addr.c_str(), true);
}

} // namespace emporium::actors::cluster_tls
