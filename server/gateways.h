#pragma once
// Gateways and their activation (DESIGN.md "Control", steps 1, 3 and 4):
//   1. a gateway posts its public key and what it is → an activation key (short,
//      human-typeable, single use, 30 minutes) and a request id;
//   3. the customer submits the key with a name → the gateway is the customer's;
//   4. the gateway polls, signing with its private key, and learns its id and name.
// Activation keys are stored only as their SHA-256. A customer's wrong keys count
// against a limit (kMaxClaimFailures per kClaimWindowSeconds): guessing is slow.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "db.h"
#include "ferry/status.h"

namespace ferry::control {

struct ActivationRequest {
  std::string publicKey;  // PEM
  std::string hostname;
  std::string version;
  std::vector<std::string> addresses;
};

struct ActivationTicket {
  std::string requestId;
  std::string key;  // XXXX-XXXX-XXXX-XXXX
  int64_t expiresAt = 0;
};

struct GatewayInfo {
  std::string id;
  std::string name;
  std::string timezone;
  std::string hostname;
  std::string version;
  std::vector<std::string> addresses;
  std::string keyFingerprint;
  int64_t createdAt = 0;
  int64_t lastSeenAt = 0;
  bool online = false;  // holds a channel to a server
  std::string server;   // which one
  bool reactivated = false;  // (claim) an existing gateway's key pair activated again
};

// A server of the farm and its internal endpoint.
struct PeerServer {
  std::string id;
  std::string internalUrl;
};

struct ActivationState {
  bool activated = false;
  GatewayInfo gateway;  // when activated
};

class Gateways {
 public:
  explicit Gateways(Db& db) : db_(db) {}
  // A server whose heartbeat is older than this is dead: its gateways are offline.
  void setServerStaleSeconds(int64_t s) { serverStaleSeconds_ = s; }

  static constexpr int64_t kKeyLifetimeSeconds = 30 * 60;
  static constexpr int kMaxClaimFailures = 10;
  static constexpr int64_t kClaimWindowSeconds = 10 * 60;
  static constexpr int64_t kSignatureSkewSeconds = 300;

  Result<ActivationTicket> startActivation(const ActivationRequest& request);
  Result<GatewayInfo> claim(const std::string& accountId, const std::string& key, const std::string& name,
                            const std::string& timezone);
  // The gateway asks how its activation stands, proving it holds the key it posted:
  // signature = base64 of its signature over activationChallenge(requestId, unixTime).
  Result<ActivationState> activationState(const std::string& requestId, int64_t unixTime, const std::string& signature);

  // Remembers a client certificate issued to a gateway (for rotation and revocation).
  Status recordCertificate(const std::string& gatewayId, const std::string& serial, int64_t notAfter);

  // The channel: a gateway connected to serverId (epoch tells this connection from a
  // later one); disconnected only removes the row of the same epoch.
  Status connected(const std::string& gatewayId, const std::string& serverId, int64_t epoch);
  Status disconnected(const std::string& gatewayId, const std::string& serverId, int64_t epoch);
  // Many channels at once (a reconnection storm), in one transaction: each
  // (gateway, epoch) that names a gateway still on record is registered to serverId
  // as connected() does; the answer says, in order, which ones were.
  Result<std::vector<bool>> connectMany(const std::vector<std::pair<std::string, int64_t>>& channels,
                                        const std::string& serverId);
  // After serverId was taken for dead: registers its held channels (gateway, epoch)
  // again, in one transaction, except where another server registered one meanwhile.
  Status reclaim(const std::string& serverId, const std::vector<std::pair<std::string, int64_t>>& held);
  bool exists(const std::string& gatewayId);
  // Drops every registration of serverId: at its start and clean stop, none of its
  // connections are open.
  Status forgetServer(const std::string& serverId);
  // This server is alive (its row in the servers table, now), and where peers reach it.
  // True when its row was missing — new, or expired by a peer that thought it dead:
  // then its registrations are gone too and must be made again.
  Result<bool> heartbeat(const std::string& serverId, const std::string& internalUrl = "");
  // The live server holding gatewayId's channel, if any.
  Result<std::optional<PeerServer>> holder(const std::string& gatewayId);
  // Every server with a fresh heartbeat but exceptId.
  Result<std::vector<PeerServer>> livePeers(const std::string& exceptId);
  // Removes the registrations, and rows, of servers whose heartbeat is stale; returns
  // how many registrations went.
  Result<int64_t> expireStaleServers();

  Result<std::vector<GatewayInfo>> list(const std::string& accountId);
  // Every account's gateways, and activations started but not claimed nor expired.
  Result<std::pair<int64_t, int64_t>> counts();
  Result<GatewayInfo> get(const std::string& accountId, const std::string& id);
  Status rename(const std::string& accountId, const std::string& id, const std::string& name);
  Status remove(const std::string& accountId, const std::string& id);

 private:
  Status recordClaimFailure(const std::string& accountId);
  // The account's gateways, or only gatewayId ("" = all).
  Result<std::vector<GatewayInfo>> select(const std::string& accountId, const std::string& gatewayId);
  Db& db_;
  int64_t serverStaleSeconds_ = 30;
};

// "abcd efgh-jklm NPQR" → "ABCDEFGHJKLMNPQR"; "" if it cannot be a key.
std::string normalizeActivationKey(const std::string& key);
Status checkGatewayName(const std::string& name);

}  // namespace ferry::control
