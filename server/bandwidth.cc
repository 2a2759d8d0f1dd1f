#include "bandwidth.h"

#include <Poco/Data/Session.h>

#include "ferry/bandwidth_schedule.h"

namespace ferry::control {

using json = nlohmann::json;
using namespace Poco::Data::Keywords;

Result<BandwidthInfo> Bandwidth::get(const std::string& accountId, const std::string& gatewayId) {
  std::string acc = accountId, gid = gatewayId;
  std::vector<std::string> texts, zones;
  std::vector<Poco::Int64> revisions;
  Status s = dbCall("read bandwidth limits", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT bandwidth, bandwidth_revision, timezone FROM gateways WHERE id = $1 AND account_id = $2", use(gid),
        use(acc), into(texts), into(revisions), into(zones), now;
    return Status::ok();
  });
  if (!s) return s;
  if (texts.empty()) return Status::notFound("no gateway " + gatewayId);
  BandwidthInfo info;
  json stored = json::parse(texts[0], nullptr, false);
  auto schedule = BandwidthSchedule::fromJson(stored.is_object() ? stored : json::object());
  info.limits = schedule ? schedule.value().toJson() : BandwidthSchedule{}.toJson();
  info.revision = revisions[0];
  info.timezone = zones[0];
  return info;
}

Result<std::pair<BandwidthInfo, RequestInfo>> Bandwidth::set(const std::string& accountId, const std::string& gatewayId,
                                                             const json& setting) {
  auto schedule = BandwidthSchedule::fromJson(setting);
  if (!schedule) return schedule.status();
  BandwidthInfo info;
  info.limits = schedule.value().toJson();
  auto r = outbox_.submitMade(
      accountId, gatewayId, "bandwidth.set", [&](Poco::Data::Session& ses, const std::string&) -> Result<json> {
        std::string gid = gatewayId, text = info.limits.dump(), zone;
        Poco::Int64 revision = 0;
        // The increment in the UPDATE: it locks the row, so two racing settings
        // (PostgreSQL reads committed rows) get two revisions, never the same one.
        ses << "UPDATE gateways SET bandwidth = $1, bandwidth_revision = bandwidth_revision + 1 WHERE id = $2",
            use(text), use(gid), now;
        ses << "SELECT bandwidth_revision, timezone FROM gateways WHERE id = $1", use(gid), into(revision), into(zone),
            now;
        info.revision = revision;
        info.timezone = zone;
        return json{{"revision", info.revision}, {"timezone", info.timezone}, {"limits", info.limits}};
      });
  if (!r) return r.status();
  return std::make_pair(info, r.value());
}

}  // namespace ferry::control
