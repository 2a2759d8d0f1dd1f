#pragma once
// The provider CA: signs the control servers' own TLS certificates and the client
// certificates gateways use on the channel (activation step 5). Made on first start
// in a directory (ca.key 0600, ca.crt), or given by the operator as those two files.
// EC P-256 keys, SHA-256 signatures.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ferry/status.h"

namespace ferry::control {

struct IssuedCertificate {
  std::string certificatePem;
  std::string privateKeyPem;  // empty when the caller holds the key (a CSR)
  std::string serial;
  int64_t notAfter = 0;
};

class CertificateAuthority {
 public:
  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  // Loads DIR/ca.key and DIR/ca.crt, or makes them (a 10-year CA) when both are absent.
  static Result<std::unique_ptr<CertificateAuthority>> loadOrCreate(const std::string& dir);

  const std::string& certificatePem() const { return caPem_; }

  // A server certificate with its own new key, for names (DNS names or IP addresses).
  Result<IssuedCertificate> issueServer(const std::vector<std::string>& names, int days);
  // Signs a gateway's CSR: the CSR must be self-signed by the key whose fingerprint the
  // gateway activated with. Subject CN = gatewayId; for TLS client authentication only.
  Result<IssuedCertificate> signGateway(const std::string& csrPem, const std::string& expectedFingerprint,
                                        const std::string& gatewayId, int days);

 private:
  struct Impl;
  explicit CertificateAuthority(std::unique_ptr<Impl> impl, std::string caPem);
  std::unique_ptr<Impl> impl_;
  std::string caPem_;
};

}  // namespace ferry::control
