#include "iscsi_access.h"

#include <Poco/Data/Session.h>
#include <Poco/Data/Statement.h>
#include <Poco/Tuple.h>

#include <vector>

#include "gateway_metrics.h"

namespace ferry::control {

using json = nlohmann::json;
using namespace Poco::Data::Keywords;

namespace {

constexpr size_t kMaxInitiators = 256;
// With the state of the request that sent the CHAP setting: the setting is the
// customer's wish until the gateway has applied it.
constexpr const char* kColumns =
    "SELECT i.volume, i.initiator_user, i.initiator_secret, i.target_user, i.target_secret, i.chap_request_id,"
    " i.target, i.state, i.error, i.initiators, i.reported_at, COALESCE(r.state, ''), COALESCE(r.error, '')"
    " FROM volume_iscsi i LEFT JOIN requests r ON r.id = i.chap_request_id ";
using Row = Poco::Tuple<std::string, std::string, std::string, std::string, std::string, std::string, std::string,
                        std::string, std::string, std::string, Poco::Int64, std::string, std::string>;

IscsiInfo infoOf(const std::string& gatewayId, const Row& r) {
  IscsiInfo i;
  i.gatewayId = gatewayId;
  i.volume = r.get<0>();
  i.chap = {r.get<1>(), r.get<2>(), r.get<3>(), r.get<4>()};
  i.chapRequestId = r.get<5>();
  i.target = r.get<6>();
  i.state = r.get<7>();
  i.error = r.get<8>();
  i.initiators = json::parse(r.get<9>(), nullptr, false);
  if (!i.initiators.is_array()) i.initiators = json::array();
  i.reportedAt = r.get<10>();
  i.chapRequestState = r.get<11>();
  json error = json::parse(r.get<12>(), nullptr, false);
  if (error.is_object()) i.chapRequestError = error.value("message", "");
  return i;
}

}  // namespace

json iscsiJson(const IscsiInfo& i) {
  return {{"target", i.target},
          {"port", 3260},
          {"state", i.state.empty() ? "unknown" : i.state},
          {"error", i.error},
          {"chap", chapPublicJson(i.chap)},
          {"chap_request_id", i.chapRequestId},
          // pending or delivered: not applied yet; failed: the gateway refused it (the
          // setting shown is what was asked, not what the gateway holds)
          {"chap_request_state", i.chapRequestState},
          {"chap_request_error", i.chapRequestError},
          {"initiators", i.initiators},
          {"reported_at", i.reportedAt}};
}

Result<RequestInfo> IscsiAccess::setChap(const std::string& accountId, const std::string& gatewayId,
                                         const std::string& volume, const ChapSetting& chap) {
  auto v = inventory_.volume(accountId, gatewayId, volume);  // the account's volume, else 404
  if (!v) return v.status();
  if (v.value().state != "available") {
    return Status::busy("volume " + volume + " is " + v.value().state + "; try again when it is available");
  }
  json args = chapToJson(chap);
  args["name"] = volume;
  return outbox_.submit(accountId, gatewayId, "volume.chap", args,
                        [&](Poco::Data::Session& ses, const std::string& requestId) {
                          std::string gid = gatewayId, vol = volume, iu = chap.initiatorUser,
                                      is = chap.initiatorSecret, tu = chap.targetUser, ts = chap.targetSecret,
                                      rid = requestId;
                          ses << "INSERT INTO volume_iscsi (gateway_id, volume, initiator_user, initiator_secret,"
                                 " target_user, target_secret, chap_request_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                                 " ON CONFLICT (gateway_id, volume) DO UPDATE SET"
                                 " initiator_user = excluded.initiator_user,"
                                 " initiator_secret = excluded.initiator_secret, target_user = excluded.target_user,"
                                 " target_secret = excluded.target_secret, chap_request_id = excluded.chap_request_id",
                              use(gid), use(vol), use(iu), use(is), use(tu), use(ts), use(rid), now;
                          return Status::ok();
                        });
}

Result<IscsiInfo> IscsiAccess::get(const std::string& accountId, const std::string& gatewayId,
                                   const std::string& volume) {
  auto v = inventory_.volume(accountId, gatewayId, volume);
  if (!v) return v.status();
  auto all = forGateway(gatewayId);
  if (!all) return all.status();
  auto it = all.value().find(volume);
  if (it != all.value().end()) return it->second;
  IscsiInfo none;
  none.gatewayId = gatewayId;
  none.volume = volume;
  return none;
}

Result<std::map<std::string, IscsiInfo>> IscsiAccess::forGateway(const std::string& gatewayId) {
  std::string gid = gatewayId;
  std::vector<Row> rows;
  Status s = dbCall("read iscsi settings", [&] {
    Poco::Data::Session ses = db_.session();
    ses << std::string(kColumns) + "WHERE i.gateway_id = $1", use(gid), into(rows), now;
    return Status::ok();
  });
  if (!s) return s;
  std::map<std::string, IscsiInfo> out;
  for (const auto& r : rows) out[r.get<0>()] = infoOf(gatewayId, r);
  return out;
}

Status IscsiAccess::record(const std::string& gatewayId, const json& report) {
  if (!report.is_object() || !report.contains("volumes") || !report["volumes"].is_array()) {
    return Status::invalid("iscsi report: want {\"volumes\": [...]}");
  }
  const json& volumes = report.at("volumes");
  if (volumes.size() > kMaxReportVolumes) return Status::invalid("iscsi report: too many volumes");
  auto atField = report.find("at");
  if (atField == report.end() || !atField->is_number_integer()) {
    return Status::invalid("iscsi report: 'at' must be Unix seconds");
  }
  Poco::Int64 at = atField->get<int64_t>();
  return dbCall("record iscsi report", [&] {
    Poco::Data::Session ses = db_.session();
    ses.begin();
    // A volume the report leaves out is no target now (until a report lists it).
    std::string gidAll = gatewayId;
    ses << "UPDATE volume_iscsi SET state = '', error = '', initiators = '[]' WHERE gateway_id = $1", use(gidAll), now;
    for (const auto& v : volumes) {
      if (!v.is_object()) continue;
      auto text = [&v](const char* key) {
        auto it = v.find(key);
        return it != v.end() && it->is_string() ? it->get<std::string>().substr(0, 1024) : std::string();
      };
      std::string gid = gatewayId, name = text("name"), target = text("target"), state = text("state"),
                  error = text("error");
      json initiators = json::array();
      auto listed = v.find("initiators");
      if (listed == v.end() || !listed->is_array()) continue;
      for (const auto& i : *listed) {
        if (initiators.size() >= kMaxInitiators || !i.is_object()) break;
        auto part = [&i](const char* key) {
          auto it = i.find(key);
          return it != i.end() && it->is_string() ? it->get<std::string>().substr(0, 256) : std::string();
        };
        initiators.push_back({{"name", part("name")}, {"address", part("address")}});
      }
      std::string in = initiators.dump();
      std::vector<std::string> known;
      ses << "SELECT name FROM volumes WHERE gateway_id = $1 AND name = $2", use(gid), use(name), into(known), now;
      if (known.empty()) continue;
      ses << "INSERT INTO volume_iscsi (gateway_id, volume, target, state, error, initiators, reported_at)"
             " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (gateway_id, volume) DO UPDATE SET"
             " target = excluded.target, state = excluded.state, error = excluded.error,"
             " initiators = excluded.initiators, reported_at = excluded.reported_at",
          use(gid), use(name), use(target), use(state), use(error), use(in), use(at), now;
    }
    ses.commit();
    return Status::ok();
  });
}

}  // namespace ferry::control
