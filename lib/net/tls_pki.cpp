// The test PKI of sovereign/net/tls_pki.h with OpenSSL 3 libcrypto: EVP_EC_gen for the P-256
// keys, X509 built field by field, extensions from their config-string forms (X509V3_EXT_conf_nid),
// SHA-256 signatures. Files are written to "<name>.tmp" with their final mode, fsynced and
// renamed over the old ones.
#include "sovereign/net/tls_pki.h"

#include "sovereign/file.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace sov::net {

namespace {

struct Free {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
    void operator()(X509* p) const { X509_free(p); }
    void operator()(BIO* p) const { BIO_free(p); }
    void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
    void operator()(BIGNUM* p) const { BN_free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Free>;
using Cert = std::unique_ptr<X509, Free>;
using Bio = std::unique_ptr<BIO, Free>;

// OpenSSL's last queued error in words (and the queue emptied).
std::string ssl_error() {
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (!e) return "unknown OpenSSL error";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

// Writes `data` to `path` with mode `mode` (whatever the umask), durably and atomically.
Errc write_with_mode(const std::string& path, const std::string& data, mode_t mode, std::string& err) {
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        const int e = errno;
        err = tmp + ": " + std::strerror(e);
        return from_errno(e);
    }
    Errc code = Errc::ok;
    if (::fchmod(fd, mode) != 0) {
        const int e = errno;
        err = tmp + ": " + std::strerror(e);
        code = from_errno(e);
    }
    if (code == Errc::ok)
        code = file::write_all(fd, ByteView(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()), tmp, err);
    if (code == Errc::ok && ::fsync(fd) != 0) {
        const int e = errno;
        err = tmp + ": " + std::strerror(e);
        code = from_errno(e);
    }
    ::close(fd);
    if (code != Errc::ok) {
        ::unlink(tmp.c_str());
        return code;
    }
    return file::rename(tmp, path, err);
}

std::string pem_of(X509* c) {
    Bio b(BIO_new(BIO_s_mem()));
    if (!b || !PEM_write_bio_X509(b.get(), c)) return {};
    char* p = nullptr;
    long n = BIO_get_mem_data(b.get(), &p);
    return std::string(p, std::size_t(n));
}

std::string pem_of(EVP_PKEY* k) {
    Bio b(BIO_new(BIO_s_mem()));
    if (!b || !PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr)) return {};
    char* p = nullptr;
    long n = BIO_get_mem_data(b.get(), &p);
    return std::string(p, std::size_t(n));
}

bool add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    std::unique_ptr<X509_EXTENSION, Free> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
    return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

// A certificate for `key` named `cn`, valid from an hour ago for `days`, with a random
// 127-bit serial (positive), issued by `issuer` (itself when null); not signed yet.
Cert make_cert(EVP_PKEY* key, const std::string& cn, int days, X509* issuer) {
    Cert c(X509_new());
    if (!c || !X509_set_version(c.get(), 2)) return {};
    std::unique_ptr<BIGNUM, Free> serial(BN_new());
    if (!serial || !BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(c.get())))
        return {};
    if (!X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(c.get()), long(days) * 86400))
        return {};
    X509_NAME* name = X509_get_subject_name(c.get());
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("sovereign test"),
                                    -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                                    -1, 0))
        return {};
    if (!X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name) ||
        !X509_set_pubkey(c.get(), key))
        return {};
    return c;
}

Errc read_pem_file(const std::string& path, std::string& out, std::string& err) {
    std::vector<std::uint8_t> bytes;
    if (Errc e = file::read_file(path, bytes, err); e != Errc::ok) return e;
    out.assign(bytes.begin(), bytes.end());
    return Errc::ok;
}

// Loads the CA of `dir`: its certificate and key, checked to belong together and to be a CA.
Errc load_ca(const std::string& cert_path, const std::string& key_path, Cert& cert, Key& key, std::string& err) {
    std::string text;
    if (Errc e = read_pem_file(cert_path, text, err); e != Errc::ok) return e;
    Bio b(BIO_new_mem_buf(text.data(), int(text.size())));
    cert.reset(b ? PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!cert) {
        err = cert_path + ": not a PEM certificate (" + ssl_error() + ")";
        return Errc::bad_argument;
    }
    if (Errc e = read_pem_file(key_path, text, err); e != Errc::ok) return e;
    b.reset(BIO_new_mem_buf(text.data(), int(text.size())));
    key.reset(b ? PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr) : nullptr);
    OPENSSL_cleanse(text.data(), text.size());
    if (!key) {
        err = key_path + ": not a PEM private key (" + ssl_error() + ")";
        return Errc::bad_argument;
    }
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
        ERR_clear_error();
        err = key_path + ": not the private key of " + cert_path;
        return Errc::bad_argument;
    }
    if (X509_check_ca(cert.get()) == 0) {
        err = cert_path + ": not a CA certificate (no basicConstraints CA:TRUE)";
        return Errc::bad_argument;
    }
    return Errc::ok;
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

Errc make_test_pki(const std::string& dir, const std::vector<std::string>& dns_names,
                   const std::vector<std::string>& ips, TestPki& out, std::string& err) {
    out = TestPki{};
    if (dir.empty()) {
        err = "--tls: an empty directory name";
        return Errc::bad_argument;
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
        if (errno != ENOENT || ::mkdir(dir.c_str(), 0700) != 0) {
            const int e = errno;
            err = dir + ": " + std::strerror(e);
            return from_errno(e);
        }
    } else if (!S_ISDIR(st.st_mode)) {
        err = dir + ": not a directory";
        return Errc::io_not_directory;
    }
    const std::string base = dir.back() == '/' ? dir : dir + "/";
    out.ca_file = base + "ca.pem";
    out.server_cert_file = base + "server.pem";
    out.server_key_file = base + "server-key.pem";
    const std::string ca_key_file = base + "ca-key.pem";

    // The subject alternative names, checked before anything is made.
    std::string san;
    for (const std::string& n : dns_names) {
        if (n.empty() || n.find_first_of(", \t\r\n") != std::string::npos) {
            err = "--tls: '" + n + "' is not a host name for a certificate";
            return Errc::bad_argument;
        }
        san += (san.empty() ? "DNS:" : ",DNS:") + n;
    }
    for (const std::string& ip : ips) {
        unsigned char buf[16];
        if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1) {
            err = "--tls: '" + ip + "' is not an IP address";
            return Errc::bad_argument;
        }
        san += (san.empty() ? "IP:" : ",IP:") + ip;
    }
    if (san.empty()) {
        err = "--tls: no name for the server certificate";
        return Errc::bad_argument;
    }

    Cert ca;
    Key ca_key;
    const bool have_cert = exists(out.ca_file), have_key = exists(ca_key_file);
    if (have_cert != have_key) {
        err = dir + ": has " + (have_cert ? "ca.pem but no ca-key.pem" : "ca-key.pem but no ca.pem") +
              " (remove it to make a new CA, or add its pair)";
        return Errc::bad_argument;
    }
    if (have_cert) {
        if (Errc e = load_ca(out.ca_file, ca_key_file, ca, ca_key, err); e != Errc::ok) return e;
        out.reused_ca = true;
    } else {
        ca_key.reset(EVP_EC_gen("P-256"));
        if (ca_key) ca = make_cert(ca_key.get(), "sovereign test CA", 3650, nullptr);
        if (!ca || !add_ext(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE") ||
            !add_ext(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
            !add_ext(ca.get(), ca.get(), NID_subject_key_identifier, "hash") ||
            !X509_sign(ca.get(), ca_key.get(), EVP_sha256())) {
            err = "cannot make the test CA: " + ssl_error();
            return Errc::io_error;
        }
        if (Errc e = write_with_mode(ca_key_file, pem_of(ca_key.get()), 0600, err); e != Errc::ok) return e;
        if (Errc e = write_with_mode(out.ca_file, pem_of(ca.get()), 0644, err); e != Errc::ok) return e;
    }

    Key key(EVP_EC_gen("P-256"));
    Cert cert;
    const std::string cn = !dns_names.empty() ? dns_names.front() : ips.front();
    if (key) cert = make_cert(key.get(), cn, 30, ca.get());
    if (!cert || !add_ext(cert.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(cert.get(), ca.get(), NID_key_usage, "critical,digitalSignature") ||
        !add_ext(cert.get(), ca.get(), NID_ext_key_usage, "serverAuth") ||
        !add_ext(cert.get(), ca.get(), NID_subject_key_identifier, "hash") ||
        !add_ext(cert.get(), ca.get(), NID_authority_key_identifier, "keyid:always") ||
        !add_ext(cert.get(), ca.get(), NID_subject_alt_name, san.c_str()) ||
        !X509_sign(cert.get(), ca_key.get(), EVP_sha256())) {
        err = "cannot make the test server certificate: " + ssl_error();
        return Errc::io_error;
    }
    if (Errc e = write_with_mode(out.server_key_file, pem_of(key.get()), 0600, err); e != Errc::ok) return e;
    if (Errc e = write_with_mode(out.server_cert_file, pem_of(cert.get()), 0644, err); e != Errc::ok) return e;
    return file::fsync_dir(dir, err);
}

}  // namespace sov::net
