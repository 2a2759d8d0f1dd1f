#include "keys.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>
#include <vector>

#include "crypto.h"

namespace ferry::control {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Result<Pkey> parse(const std::string& pem) {
  if (pem.size() > 16384) return Status::invalid("public key too large");
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return Status::invalid("public_key is not a PEM public key");
  int type = EVP_PKEY_base_id(key.get());
  if (type == EVP_PKEY_RSA && EVP_PKEY_bits(key.get()) < 2048) return Status::invalid("RSA keys must be ≥ 2048 bits");
  if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC && type != EVP_PKEY_ED25519) {
    return Status::invalid("public_key must be EC, Ed25519 or RSA");
  }
  return key;
}

bool base64Decode(const std::string& in, std::vector<unsigned char>& out) {
  if (in.empty() || in.size() > 8192 || in.size() % 4 != 0) return false;
  out.resize(in.size() / 4 * 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return false;
  size_t pad = 0;
  if (in.back() == '=') ++pad;
  if (in.size() > 1 && in[in.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return true;
}

}  // namespace

Result<std::string> publicKeyFingerprint(const std::string& pem) {
  auto key = parse(pem);
  if (!key) return key.status();
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key.value().get(), &der);
  if (len <= 0) return Status::invalid("cannot encode public key");
  std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return sha256Hex(bytes);
}

std::string activationChallenge(const std::string& requestId, int64_t unixTime) {
  return "ferry-activation\n" + requestId + "\n" + std::to_string(unixTime);
}

Status verifySignature(const std::string& publicKeyPem, const std::string& message, const std::string& signatureB64) {
  auto key = parse(publicKeyPem);
  if (!key) return key.status();
  std::vector<unsigned char> sig;
  if (!base64Decode(signatureB64, sig)) return Status::denied("the signature is not base64");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  // Ed25519 signs the message itself (no separate digest).
  const EVP_MD* md = EVP_PKEY_base_id(key.value().get()) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.value().get()) != 1) {
    return Status::denied("cannot verify with this key");
  }
  int ok = EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), reinterpret_cast<const unsigned char*>(message.data()),
                            message.size());
  if (ok != 1) return Status::denied("the signature does not match the gateway's key");
  return Status::ok();
}

}  // namespace ferry::control
