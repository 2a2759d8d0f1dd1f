#pragma once
// Each volume's iSCSI side as the provider knows it: the CHAP credentials the customer
// set (sent to the gateway as a volume.chap request through the outbox, kept here so
// the gateway can be given them again), and what the gateway last reported — the
// target's name, its state and the initiators logged in (the agent's "iscsi" report,
// appliance/iscsi_targets.h). Secrets are stored for the gateway, never shown.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "db.h"
#include "ferry/chap.h"
#include "inventory.h"
#include "outbox.h"

namespace ferry::control {

struct IscsiInfo {
  std::string gatewayId, volume;
  ChapSetting chap;
  std::string chapRequestId;  // the request that last sent the CHAP setting
  std::string chapRequestState, chapRequestError;  // its state, and the gateway's error
  std::string target, state, error;  // as reported; "" until the first report
  nlohmann::json initiators = nlohmann::json::array();
  int64_t reportedAt = 0;  // Unix seconds
};

nlohmann::json iscsiJson(const IscsiInfo& i);

class IscsiAccess {
 public:
  IscsiAccess(Db& db, Outbox& outbox, Inventory& inventory) : db_(db), outbox_(outbox), inventory_(inventory) {}

  // Keeps the setting and asks the gateway to apply it (an empty initiator user turns
  // CHAP off). kNotFound unless the volume is the account's and available.
  Result<RequestInfo> setChap(const std::string& accountId, const std::string& gatewayId, const std::string& volume,
                              const ChapSetting& chap);
  Result<IscsiInfo> get(const std::string& accountId, const std::string& gatewayId, const std::string& volume);
  // Every volume's of a gateway with a row (no row: no CHAP set, nothing reported).
  Result<std::map<std::string, IscsiInfo>> forGateway(const std::string& gatewayId);
  // A gateway's "iscsi" report; rows of volumes the provider does not know are skipped.
  Status record(const std::string& gatewayId, const nlohmann::json& report);

 private:
  Db& db_;
  Outbox& outbox_;
  Inventory& inventory_;
};

}  // namespace ferry::control
