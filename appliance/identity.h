#pragma once
// The gateway's key pair (DESIGN.md "Control", activation step 1): EC P-256, made on
// first start, the private key in STATE/gateway.key (mode 0600) and never sent
// anywhere. It signs activation polls and the CSR for the channel's certificate.

#include <memory>
#include <string>

#include "ferry/status.h"

namespace ferry::agent {

class Identity {
 public:
  ~Identity();
  Identity(const Identity&) = delete;
  Identity& operator=(const Identity&) = delete;

  // Loads STATE/gateway.key, or makes it.
  static Result<std::unique_ptr<Identity>> loadOrCreate(const std::string& stateDir);

  std::string publicPem() const;
  const std::string& keyPath() const { return keyPath_; }
  // base64 of the SHA-256 signature of message.
  std::string sign(const std::string& message) const;
  // A certificate request for this key (the provider sets the subject).
  std::string csr() const;
  // Whether the PEM certificate is for this key.
  bool matches(const std::string& certificatePem) const;

 private:
  struct Impl;
  Identity(std::unique_ptr<Impl> impl, std::string keyPath);
  std::unique_ptr<Impl> impl_;
  std::string keyPath_;
};

}  // namespace ferry::agent
