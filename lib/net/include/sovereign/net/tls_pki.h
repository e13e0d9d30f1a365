// sovereign/net/tls_pki.h — a throw-away certificate authority and server certificate for the
// simulated network (mesh-sim serve --tls) and the tests: EC P-256 keys and X.509 v3
// certificates made in memory with OpenSSL's libcrypto, written to a directory as PEM files
// for the server (HttpServerTls) and for the clients (`--ca DIR/ca.pem`).
//
// Files in DIR (created with mode 0700 when missing; one level only):
//   ca.pem          the CA certificate (mode 0644): what clients trust
//   ca-key.pem      the CA's private key (mode 0600)
//   server.pem      the server certificate, signed by the CA (mode 0644)
//   server-key.pem  the server's private key (mode 0600)
// The CA is reused when DIR already holds ca.pem and ca-key.pem (so clients keep trusting a
// restarted server); the server key and certificate are made afresh on every call, with the
// subject alternative names asked for, valid from one hour ago for 30 days (the CA: 10 years).
#pragma once

#include "sovereign/errc.h"

#include <string>
#include <vector>

namespace sov::net {

struct TestPki {
    std::string ca_file;           ///< DIR/ca.pem
    std::string server_cert_file;  ///< DIR/server.pem
    std::string server_key_file;   ///< DIR/server-key.pem
    bool reused_ca = false;        ///< the CA came from DIR rather than being made now
};

/// Makes (or reuses, see above) the CA in `dir` and issues a server certificate whose subject
/// alternative names are `dns_names` (DNS entries, e.g. "localhost", "relay.test"; each also
/// the common name of the first) and `ips` (IP address entries, dotted IPv4 or IPv6 text).
/// Errors: `err` names the file and the reason, with io_* codes (DIR not a directory, not
/// writable, a file unreadable) or bad_argument (ca.pem without ca-key.pem or the reverse, a
/// file that is not a PEM certificate / private key, a key that does not match the
/// certificate, a certificate that is not a CA, an IP that does not parse).
Errc make_test_pki(const std::string& dir, const std::vector<std::string>& dns_names,
                   const std::vector<std::string>& ips, TestPki& out, std::string& err);

}  // namespace sov::net
