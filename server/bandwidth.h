#pragma once
// A gateway's bandwidth limits and their schedule (ferry/bandwidth_schedule.h), as the
// customer sets them. The provider keeps the latest setting with a revision that only
// grows; each change is a bandwidth.set request in the outbox, stored in the same
// transaction, carrying the whole setting, the revision and the gateway's time zone.
// The agent applies the schedule in that zone and ignores a revision older than the
// one it holds, so a late redelivery can never bring back an older setting.

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "db.h"
#include "outbox.h"

namespace ferry::control {

struct BandwidthInfo {
  nlohmann::json limits;  // canonical (BandwidthSchedule::toJson)
  int64_t revision = 0;   // 0: never set (no limits)
  std::string timezone;
};

class Bandwidth {
 public:
  Bandwidth(Db& db, Outbox& outbox) : db_(db), outbox_(outbox) {}
  Result<BandwidthInfo> get(const std::string& accountId, const std::string& gatewayId);
  // Checks the setting (kInvalidArgument with the reason), stores it, queues the
  // request.
  Result<std::pair<BandwidthInfo, RequestInfo>> set(const std::string& accountId, const std::string& gatewayId,
                                                    const nlohmann::json& setting);

 private:
  Db& db_;
  Outbox& outbox_;
};

}  // namespace ferry::control
