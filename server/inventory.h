#pragma once
// What the provider asked each gateway to hold: volumes and snapshots. Each change is a
// request in the outbox, stored in the same transaction as the record it changes; the
// record follows the gateway's answer (Inventory::settle, the outbox's settler):
//
//   volume:   creating ─done─▶ available ─delete─▶ deleting ─done─▶ (gone)
//             creating ─failed─▶ (gone; the request keeps the error)
//             deleting ─failed─▶ available
//   snapshot: pending ─done─▶ completed | ─failed─▶ failed; completed ─delete─▶
//             deleting ─done─▶ (gone), ─failed─▶ completed
//
// Every call is scoped to an account: another account's gateway is a 404.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "db.h"
#include "operations.h"
#include "outbox.h"

namespace ferry::control {

struct VolumeInfo {
  std::string gatewayId, name;
  int64_t size = 0, chunkSize = 0;
  std::string state;
  std::string requestId;  // the request that last changed it
  int64_t createdAt = 0;  // Unix milliseconds
  // Made from a snapshot ({"snapshot", "gateway_id", "volume"}) or a volume's recovery
  // point ({"recovery_point": true, "gateway_id", "volume"}); once made, what the
  // gateway used ("used": {"snapshot", "created"}) and, for a recovery point, how long
  // before its gateway was last seen it was taken ("seconds_before_last_seen"). Null
  // otherwise.
  nlohmann::json source;
};

// Where a new volume comes from: a completed snapshot of any of the account's
// gateways, or the newest recovery point of a volume on any of them — a clone of a
// live volume, or the recovery of a lost gateway's.
struct VolumeSource {
  std::string snapshotId;          // snap-…; or
  std::string gatewayId, volume;   // that volume's recovery point
};

// The object store the provider gives a gateway: "{gateway}" in the template is its id.
std::string gatewayStoreUrl(const std::string& storeTemplate, const std::string& gatewayId);

struct SnapshotInfo {
  std::string id;  // snap-…
  std::string gatewayId, volume, state, requestId;
  int64_t createdAt = 0, completedAt = 0;
  nlohmann::json detail;  // what the gateway reported when it completed
  bool scheduled = false;  // taken by a snapshot schedule (snapshot_schedule.h)
};

class Inventory {
 public:
  Inventory(Db& db, Outbox& outbox) : db_(db), outbox_(outbox) {}

  // With a source: size 0 = the source's (else at least the source's); chunk size 0 =
  // the source's (else it must be the source's).
  Result<std::pair<VolumeInfo, RequestInfo>> createVolume(const std::string& accountId, const std::string& gatewayId,
                                                          const std::string& name, int64_t size, int64_t chunkSize,
                                                          const VolumeSource* source = nullptr);
  // Where the gateways' stores are (gateway.store), for volumes made from another's.
  void setStoreTemplate(std::string storeTemplate) { storeTemplate_ = std::move(storeTemplate); }
  Result<RequestInfo> deleteVolume(const std::string& accountId, const std::string& gatewayId, const std::string& name);
  // A lost gateway's store, cleaned up: a store.purge request to another of the
  // account's gateways (via; "" = the first one online) that deletes every volume and
  // snapshot left in the lost gateway's store; when it is done the lost gateway's
  // record goes (Inventory::settle). Refused (busy) while the lost gateway is online,
  // (invalid) without gateway.store: gateways then cannot reach each other's stores.
  Result<RequestInfo> purgeGateway(const std::string& accountId, const std::string& lostId, std::string viaId);
  Result<std::vector<VolumeInfo>> volumes(const std::string& accountId, const std::string& gatewayId);
  Result<VolumeInfo> volume(const std::string& accountId, const std::string& gatewayId, const std::string& name);

  Result<std::pair<SnapshotInfo, RequestInfo>> createSnapshot(const std::string& accountId,
                                                              const std::string& gatewayId, const std::string& volume,
                                                              bool scheduled = false);
  // A completed snapshot: the request that deletes it on the gateway. A failed one
  // holds nothing on the gateway: its record goes at once (no request, nullopt).
  Result<std::optional<RequestInfo>> deleteSnapshot(const std::string& accountId, const std::string& gatewayId,
                                                    const std::string& snapshotId);
  // volume "" = every volume's.
  Result<std::vector<SnapshotInfo>> snapshots(const std::string& accountId, const std::string& gatewayId,
                                              const std::string& volume);

  // Moves the record a finished request changed (install with Outbox::setSettler).
  static Status settle(Poco::Data::Session& ses, const RequestInfo& request);

 private:
  // The source's geometry and the request's "source" argument, or why not.
  Status resolveSource(const std::string& accountId, const std::string& gatewayId, const VolumeSource& source,
                       int64_t* size, int64_t* chunkSize, nlohmann::json* args, nlohmann::json* record);

  Db& db_;
  Outbox& outbox_;
  std::string storeTemplate_;
};

}  // namespace ferry::control
