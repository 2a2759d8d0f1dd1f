#include "ca.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <ctime>
#include <fstream>
#include <sstream>

#include "crypto.h"

namespace ferry::control {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Req = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

std::string readAll(const std::string& path, bool* exists) {
  std::ifstream f(path);
  *exists = f.good();
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Status writeFile(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return errnoStatus("create " + tmp, errno);
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return errnoStatus("write " + path, errno);
  return Status::ok();
}

std::string pemOf(X509* c) {
  Bio b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), c);
  char* d = nullptr;
  long n = BIO_get_mem_data(b.get(), &d);
  return std::string(d, static_cast<size_t>(n));
}

std::string pemOfKey(EVP_PKEY* k) {
  Bio b(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr);
  char* d = nullptr;
  long n = BIO_get_mem_data(b.get(), &d);
  return std::string(d, static_cast<size_t>(n));
}

std::string fingerprintOf(EVP_PKEY* k) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(k, &der);
  if (len <= 0) return "";
  std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return sha256Hex(bytes);
}

bool addExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `subjectKey` named cn, valid `days`, with a random serial; the
// caller adds extensions and signs.
Cert newCert(EVP_PKEY* subjectKey, const std::string& cn, int days, X509* issuer, std::string* serialHex) {
  Cert c(X509_new());
  X509_set_version(c.get(), 2);
  std::string serial = randomHex(16);
  serial[0] = '1';  // positive, no leading zero
  BIGNUM* bn = nullptr;
  BN_hex2bn(&bn, serial.c_str());
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.get()));
  BN_free(bn);
  *serialHex = serial;
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -300);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), static_cast<long>(days) * 86400);
  X509_set_pubkey(c.get(), subjectKey);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("Ferry"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name);
  return c;
}

int64_t notAfterOf(X509* c) {
  struct tm t {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(c), &t) != 1) return 0;
  return static_cast<int64_t>(timegm(&t));
}

}  // namespace

struct CertificateAuthority::Impl {
  Pkey key;
  Cert cert;
};

CertificateAuthority::CertificateAuthority(std::unique_ptr<Impl> impl, std::string caPem)
    : impl_(std::move(impl)), caPem_(std::move(caPem)) {}
CertificateAuthority::~CertificateAuthority() = default;

Result<std::unique_ptr<CertificateAuthority>> CertificateAuthority::loadOrCreate(const std::string& dir) {
  std::string keyPath = dir + "/ca.key", certPath = dir + "/ca.crt";
  bool haveKey = false, haveCert = false;
  std::string keyPem = readAll(keyPath, &haveKey), certPem = readAll(certPath, &haveCert);
  auto impl = std::make_unique<Impl>();
  if (haveKey != haveCert) {
    return Status::invalid("provider CA in " + dir + ": found " + (haveKey ? "ca.key" : "ca.crt") + " without " +
                           (haveKey ? "ca.crt" : "ca.key") + "; give both or neither");
  }
  if (!haveKey) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errnoStatus("create " + dir, errno);
    impl->key.reset(EVP_EC_gen("P-256"));
    if (!impl->key) return Status::ioError("cannot make the CA key");
    std::string serial;
    impl->cert = newCert(impl->key.get(), "Ferry provider CA", 3650, nullptr, &serial);
    if (!addExt(impl->cert.get(), impl->cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !addExt(impl->cert.get(), impl->cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !addExt(impl->cert.get(), impl->cert.get(), NID_subject_key_identifier, "hash") ||
        X509_sign(impl->cert.get(), impl->key.get(), EVP_sha256()) == 0) {
      return Status::ioError("cannot make the CA certificate");
    }
    certPem = pemOf(impl->cert.get());
    if (Status s = writeFile(keyPath, pemOfKey(impl->key.get()), 0600); !s) return s;
    if (Status s = writeFile(certPath, certPem, 0644); !s) return s;
  } else {
    Bio kb(BIO_new_mem_buf(keyPem.data(), static_cast<int>(keyPem.size())));
    impl->key.reset(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
    Bio cb(BIO_new_mem_buf(certPem.data(), static_cast<int>(certPem.size())));
    impl->cert.reset(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
    if (!impl->key || !impl->cert) return Status::corruption("provider CA in " + dir + ": ca.key or ca.crt is not PEM");
    if (X509_check_private_key(impl->cert.get(), impl->key.get()) != 1) {
      return Status::corruption("provider CA in " + dir + ": ca.key does not match ca.crt");
    }
  }
  return std::unique_ptr<CertificateAuthority>(new CertificateAuthority(std::move(impl), certPem));
}

Result<IssuedCertificate> CertificateAuthority::issueServer(const std::vector<std::string>& names, int days) {
  if (names.empty()) return Status::invalid("a server certificate needs at least one name");
  Pkey key(EVP_EC_gen("P-256"));
  IssuedCertificate out;
  Cert c = newCert(key.get(), names[0], days, impl_->cert.get(), &out.serial);
  std::string san;
  for (const auto& n : names) {
    unsigned char buf[16];
    bool ip = inet_pton(AF_INET, n.c_str(), buf) == 1 || inet_pton(AF_INET6, n.c_str(), buf) == 1;
    san += (san.empty() ? "" : ",") + std::string(ip ? "IP:" : "DNS:") + n;
  }
  if (!addExt(c.get(), impl_->cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !addExt(c.get(), impl_->cert.get(), NID_key_usage, "critical,digitalSignature") ||
      !addExt(c.get(), impl_->cert.get(), NID_ext_key_usage, "serverAuth,clientAuth") ||
      !addExt(c.get(), impl_->cert.get(), NID_subject_alt_name, san) ||
      X509_sign(c.get(), impl_->key.get(), EVP_sha256()) == 0) {
    return Status::invalid("cannot make a server certificate for " + san);
  }
  out.certificatePem = pemOf(c.get());
  out.privateKeyPem = pemOfKey(key.get());
  out.notAfter = notAfterOf(c.get());
  return out;
}

Result<IssuedCertificate> CertificateAuthority::signGateway(const std::string& csrPem,
                                                            const std::string& expectedFingerprint,
                                                            const std::string& gatewayId, int days) {
  if (csrPem.size() > 16384) return Status::invalid("the CSR is too large");
  Bio b(BIO_new_mem_buf(csrPem.data(), static_cast<int>(csrPem.size())));
  Req req(PEM_read_bio_X509_REQ(b.get(), nullptr, nullptr, nullptr));
  if (!req) return Status::invalid("csr is not a PEM certificate request");
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req.get());
  if (!pub || X509_REQ_verify(req.get(), pub) != 1) return Status::invalid("the CSR's signature does not verify");
  if (fingerprintOf(pub) != expectedFingerprint) {
    return Status::denied("the CSR is for another key than the one this gateway activated with");
  }
  IssuedCertificate out;
  Cert c = newCert(pub, gatewayId, days, impl_->cert.get(), &out.serial);
  if (!addExt(c.get(), impl_->cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !addExt(c.get(), impl_->cert.get(), NID_key_usage, "critical,digitalSignature") ||
      !addExt(c.get(), impl_->cert.get(), NID_ext_key_usage, "clientAuth") ||
      X509_sign(c.get(), impl_->key.get(), EVP_sha256()) == 0) {
    return Status::ioError("cannot sign the gateway certificate");
  }
  out.certificatePem = pemOf(c.get());
  out.notAfter = notAfterOf(c.get());
  return out;
}

}  // namespace ferry::control
