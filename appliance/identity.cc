#include "identity.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace ferry::agent {

namespace {

using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string bioText(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<size_t>(n));
}

}  // namespace

struct Identity::Impl {
  EVP_PKEY* key = nullptr;
  ~Impl() { EVP_PKEY_free(key); }
};

Identity::Identity(std::unique_ptr<Impl> impl, std::string keyPath)
    : impl_(std::move(impl)), keyPath_(std::move(keyPath)) {}
Identity::~Identity() = default;

Result<std::unique_ptr<Identity>> Identity::loadOrCreate(const std::string& stateDir) {
  std::string path = stateDir + "/gateway.key";
  auto impl = std::make_unique<Impl>();
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    impl->key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    if (!impl->key) return Status::corruption(path + " is not a PEM private key");
  } else if (errno != ENOENT) {
    return Status::ioError("read " + path + ": " + std::strerror(errno));
  } else {
    impl->key = EVP_EC_gen("P-256");
    if (!impl->key) return Status::ioError("cannot make the gateway's key pair");
    Bio b(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PrivateKey(b.get(), impl->key, nullptr, nullptr, 0, nullptr, nullptr);
    std::string pem = bioText(b.get());
    // Written whole under a temporary name, then renamed: never a half key.
    std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Status::ioError("create " + tmp + ": " + std::strerror(errno));
    bool ok = ::write(fd, pem.data(), pem.size()) == static_cast<ssize_t>(pem.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return Status::ioError("write " + path);
  }
  return std::unique_ptr<Identity>(new Identity(std::move(impl), path));
}

std::string Identity::publicPem() const {
  Bio b(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PUBKEY(b.get(), impl_->key);
  return bioText(b.get());
}

std::string Identity::sign(const std::string& message) const {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, impl_->key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1) {
    return "";
  }
  std::vector<unsigned char> sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1) {
    return "";
  }
  std::string b64(4 * ((len + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()), sig.data(), static_cast<int>(len));
  b64.resize(static_cast<size_t>(n));
  return b64;
}

std::string Identity::csr() const {
  std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)> req(X509_REQ_new(), X509_REQ_free);
  X509_REQ_set_version(req.get(), 0);
  X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("ferry-gateway"), -1, -1, 0);
  X509_REQ_set_pubkey(req.get(), impl_->key);
  if (X509_REQ_sign(req.get(), impl_->key, EVP_sha256()) == 0) return "";
  Bio b(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_X509_REQ(b.get(), req.get());
  return bioText(b.get());
}

}  // namespace ferry::agent

namespace ferry::agent {

bool Identity::matches(const std::string& certificatePem) const {
  std::unique_ptr<BIO, decltype(&BIO_free)> b(
      BIO_new_mem_buf(certificatePem.data(), static_cast<int>(certificatePem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr), X509_free);
  return cert && X509_check_private_key(cert.get(), impl_->key) == 1;
}

}  // namespace ferry::agent
