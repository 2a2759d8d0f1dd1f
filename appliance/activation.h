#pragma once
// Activation, the gateway's side (DESIGN.md "Control", steps 1, 4 and 5), resumable
// across restarts at every step: what it has reached is saved in
// STATE/activation.json (mode 0600) after each step.
//
//   1. post the public key and what the gateway is → an activation key to show;
//   (2. the local page shows it; 3. the customer claims it in the console or ferryctl)
//   4. poll, signing each poll, until the provider says which gateway this is;
//   5. send a CSR → the channel's client certificate, the provider CA, the control
//      endpoint and the object store.
// A key that expired unclaimed starts over at 1 with a new key.

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "ctl_client.h"
#include "ferry/status.h"
#include "identity.h"

namespace ferry::agent {

struct ActivationRecord {
  std::string requestId, activationKey;
  int64_t keyExpiresAt = 0;
  std::string gatewayId, gatewayName;
  std::string certificatePem, caPem, controlEndpoint, store;
  int64_t certificateNotAfter = 0;

  bool activated() const { return !certificatePem.empty(); }
  // "new", "waiting_for_customer", "claimed" (certificate next), "activated"
  std::string stage() const;
};

struct GatewayFacts {
  std::string hostname, version;
  std::vector<std::string> addresses;
};

class Activation {
 public:
  Activation(Identity& identity, control::ApiClient provider, std::string stateDir, GatewayFacts facts);

  // Reads what an earlier run reached (nothing: a fresh start).
  Status load();
  // One step forward (or none, while the customer has not claimed the key); the
  // record after it. Errors (the provider unreachable, …) leave the record as it was.
  Result<ActivationRecord> step();
  ActivationRecord current() const;
  // Back to step 1 with the same key pair (the certificate expired): a new activation
  // key, which the customer claims to re-activate the same gateway.
  Status restart();
  // A renewed channel certificate (from the provider, over the channel): kept, and used
  // from the next connection.
  Status installCertificate(const std::string& certificatePem, int64_t notAfter, const std::string& caPem);

  // Where the channel's files are once activated.
  std::string certificatePath() const { return stateDir_ + "/channel.crt"; }
  std::string caPath() const { return stateDir_ + "/provider-ca.crt"; }

 private:
  Status save(const ActivationRecord& r);

  Identity& identity_;
  control::ApiClient provider_;
  std::string stateDir_;
  GatewayFacts facts_;
  mutable std::mutex mutex_;
  ActivationRecord record_;
};

// Writes text to path whole (temporary file, fsync, rename) with mode.
Status writeFileAtomically(const std::string& path, const std::string& text, int mode);

}  // namespace ferry::agent
