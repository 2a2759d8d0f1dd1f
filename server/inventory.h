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
};

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

  Result<std::pair<VolumeInfo, RequestInfo>> createVolume(const std::string& accountId, const std::string& gatewayId,
                                                          const std::string& name, int64_t size, int64_t chunkSize);
  Result<RequestInfo> deleteVolume(const std::string& accountId, const std::string& gatewayId, const std::string& name);
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
  Db& db_;
  Outbox& outbox_;
};

}  // namespace ferry::control
