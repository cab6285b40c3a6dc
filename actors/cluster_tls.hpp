#pragma once
/// Node links over TLS: CAF's OpenSSL module (libcaf_openssl 0.17.6) when cluster.tls_certificate,
/// tls_key and tls_cafile are set, the plain io middleman otherwise.
///
/// What the module does, read from its 0.17.6 sources and measured:
/// - both ends verify the other's certificate chain against cluster.tls_cafile
///   (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT); no host name is checked, so any
///   certificate the cluster CA signed is a member: that CA must sign nothing else.
/// - a peer with another CA's certificate, or a plaintext peer, fails the handshake: its dial
///   answers disconnect_during_handshake (or cannot_connect_to_node), and nothing it sent
///   reaches an actor.
/// - it reads the three files again for every link, and a file it cannot use then throws on
///   the multiplexer thread, which aborts the process: check_tls_files() refuses them at start.
/// - links are published and dialled through sys.openssl_manager().actor_handle(), which takes
///   the same messages as the middleman's (connect_atom, publish_atom); the middleman's own
///   handle would still speak plaintext.

#include "config/settings.hpp"

#include <caf/fwd.hpp>
#include <caf/io/middleman_actor.hpp>

#include <cstdint>
#include <string>

namespace emporium::actors::cluster_tls {

/// True when the node links are TLS (validation makes the three files all or none).
bool enabled(const config::cluster_settings& c);

/// Loads the certificate, key and CA as the links will, and checks that the key is not
/// encrypted, matches the certificate, and that the CA verifies the certificate for both ends of
/// a link (client and server). Throws config::config_error naming the key otherwise.
void check_tls_files(const config::cluster_settings& c);

/// check_tls_files(), then loads caf::openssl::manager and points its openssl.* options at the
/// files. Call after cfg.load<caf::io::middleman>() (the module requires the middleman).
void configure(caf::actor_system_config& cfg, const config::cluster_settings& c);

/// The address the node port binds to: cluster.node_host with TLS or cluster.insecure_bind,
/// else 127.0.0.1 (a plaintext node port lets anyone who reaches it message any actor).
std::string bind_address(const config::cluster_settings& c);

/// The actor that publishes and dials node links: the OpenSSL module's when it is loaded.
caf::io::middleman_actor link_handle(caf::actor_system& sys);

/// Publishes `node` on `port` through link_handle() (SO_REUSEADDR), bound to bind_address().
/// Blocks until the port is open: call it at start-up, never from an actor.
caf::expected<std::uint16_t> publish(caf::actor_system& sys, const caf::actor& node,
                                     std::uint16_t port, const config::cluster_settings& c);

} // namespace emporium::actors::cluster_tls
