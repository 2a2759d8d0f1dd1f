#pragma once
// CHAP credentials of one iSCSI target, as the provider stores them and the agent
// applies them: the initiator's user and secret (the target checks the initiator), and
// optionally a target user and secret (mutual CHAP: the initiator checks the target).
// Secrets are 12 to 16 printable characters, as common initiators require; the two
// secrets, and the two users, must differ. An empty initiator user means no CHAP.

#include <nlohmann/json.hpp>
#include <string>

#include "ferry/status.h"

namespace ferry {

struct ChapSetting {
  std::string initiatorUser, initiatorSecret, targetUser, targetSecret;
  bool enabled() const { return !initiatorUser.empty(); }
  bool mutual() const { return !targetUser.empty(); }
  bool operator==(const ChapSetting&) const = default;
};

// From {initiator_user, initiator_secret, target_user, target_secret} (absent = "");
// kInvalidArgument names the field and the rule.
Result<ChapSetting> chapFromJson(const nlohmann::json& in);
// All four fields (what the agent is sent and keeps).
nlohmann::json chapToJson(const ChapSetting& c);
// What may be shown: users and flags, never secrets.
nlohmann::json chapPublicJson(const ChapSetting& c);

}  // namespace ferry
