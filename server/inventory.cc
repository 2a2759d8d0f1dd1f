#include "inventory.h"

#include <Poco/Data/Statement.h>
#include <Poco/Tuple.h>

#include "crypto.h"

namespace ferry::control {

using json = nlohmann::json;
using Poco::Data::Keywords::into;
using Poco::Data::Keywords::now;
using Poco::Data::Keywords::use;

namespace {

using VolumeRow =
    Poco::Tuple<std::string, std::string, Poco::Int64, Poco::Int64, std::string, std::string, Poco::Int64, std::string>;
using SnapshotRow = Poco::Tuple<std::string, std::string, std::string, std::string, std::string, Poco::Int64,
                                Poco::Int64, std::string, int>;

constexpr const char* kVolumeColumns =
    "SELECT gateway_id, name, size, chunk_size, state, request_id, created_at, source FROM volumes ";
constexpr const char* kSnapshotColumns =
    "SELECT id, gateway_id, volume, state, request_id, created_at, completed_at, detail, scheduled FROM snapshots ";

json parsedOrNull(const std::string& text) {
  json j = text.empty() ? json() : json::parse(text, nullptr, false);
  return j.is_discarded() ? json() : j;
}

VolumeInfo volumeOf(const VolumeRow& r) {
  return {r.get<0>(), r.get<1>(), r.get<2>(), r.get<3>(), r.get<4>(), r.get<5>(), r.get<6>(), parsedOrNull(r.get<7>())};
}

SnapshotInfo snapshotOf(const SnapshotRow& r) {
  json detail = r.get<7>().empty() ? json() : json::parse(r.get<7>(), nullptr, false);
  if (detail.is_discarded()) detail = nullptr;
  return {r.get<0>(), r.get<1>(), r.get<2>(), r.get<3>(), r.get<4>(), r.get<5>(), r.get<6>(), detail, r.get<8>() != 0};
}

// The volume's state, or "" when there is no such volume.
std::string volumeState(Poco::Data::Session& ses, const std::string& gatewayId, const std::string& name) {
  std::string gid = gatewayId, nm = name;
  std::vector<std::string> states;
  ses << "SELECT state FROM volumes WHERE gateway_id = $1 AND name = $2", use(gid), use(nm), into(states), now;
  return states.empty() ? "" : states.front();
}

// Whether the gateway holds a channel to a server now.
bool isOnline(Poco::Data::Session& ses, const std::string& gatewayId) {
  std::string gid = gatewayId;
  int online = 0;
  ses << "SELECT COUNT(*) FROM registrations WHERE gateway_id = $1", use(gid), into(online), now;
  return online > 0;
}

// Whether a store.purge of the lost gateway's store is still pending or delivered.
bool purgeUnderWay(Poco::Data::Session& ses, const std::string& accountId, const std::string& lostId) {
  std::string acc = accountId;
  std::vector<std::string> args;
  ses << "SELECT args FROM requests WHERE account_id = $1 AND op = 'store.purge'"
         " AND state IN ('pending', 'delivered')",
      use(acc), into(args), now;
  for (const std::string& text : args) {
    json a = json::parse(text, nullptr, false);
    if (a.is_object() && a.value("gateway_id", "") == lostId) return true;
  }
  return false;
}

// What the gateway made a volume from (for a recovery point: which one, and when) and,
// for a recovery point of a gateway that is offline (lost), how long before it was last
// seen the point was taken: what the recovery may have lost.
void recordSourceUsed(Poco::Data::Session& ses, const RequestInfo& r) {
  std::string gid = r.gatewayId, name = r.args.value("name", ""), rid = r.id;
  std::vector<std::string> texts;
  ses << "SELECT source FROM volumes WHERE gateway_id = $1 AND name = $2 AND request_id = $3", use(gid), use(name),
      use(rid), into(texts), now;
  if (texts.empty()) return;
  json record = parsedOrNull(texts.front());
  if (!record.is_object()) record = json::object();
  const json& used = r.result.at("source");
  if (!used.is_object()) return;
  auto snapshotField = used.find("snapshot");
  auto createdField = used.find("created");
  std::string snapshot =
      snapshotField != used.end() && snapshotField->is_string() ? snapshotField->get<std::string>() : "";
  int64_t created = createdField != used.end() && createdField->is_number_integer() ? createdField->get<int64_t>() : 0;
  // A retried create (the gateway had made the volume already) does not say: nothing to add.
  if (snapshot.empty() || created <= 0) return;
  record["used"] = {{"snapshot", snapshot}, {"created", created}};
  if (record.value("recovery_point", false)) {
    std::string src = record.value("gateway_id", "");
    std::vector<Poco::Int64> seen;
    ses << "SELECT last_seen_at FROM gateways WHERE id = $1", use(src), into(seen), now;
    // Only when the gateway is offline and was seen after the point (last_seen_at
    // moves on connects and disconnects only): otherwise the loss is not known.
    if (!isOnline(ses, src) && !seen.empty() && seen.front() >= created) {
      record["seconds_before_last_seen"] = seen.front() - created;
    }
  }
  std::string text = record.dump();
  ses << "UPDATE volumes SET source = $1 WHERE gateway_id = $2 AND name = $3 AND request_id = $4", use(text), use(gid),
      use(name), use(rid), now;
}

}  // namespace

std::string gatewayStoreUrl(const std::string& storeTemplate, const std::string& gatewayId) {
  std::string store = storeTemplate;
  for (size_t at; (at = store.find("{gateway}")) != std::string::npos;) store.replace(at, 9, gatewayId);
  return store;
}

Status Inventory::resolveSource(const std::string& accountId, const std::string& gatewayId, const VolumeSource& source,
                                int64_t* size, int64_t* chunkSize, json* args, json* record) {
  return dbCall("find the source of a volume", [&] {
    Poco::Data::Session ses = db_.session();
    std::string gid, vol;
    int64_t srcSize = 0, srcChunk = 0;
    // The geometry of a volume record, when the snapshot's answer did not give it.
    auto volumeGeometry = [&](const std::string& g, const std::string& v) {
      std::vector<VolumeRow> rows;
      std::string gg = g, vv = v;
      ses << std::string(kVolumeColumns) + "WHERE gateway_id = $1 AND name = $2", use(gg), use(vv), into(rows), now;
      if (rows.empty()) return false;
      srcSize = rows.front().get<2>();
      srcChunk = rows.front().get<3>();
      return true;
    };
    if (!source.snapshotId.empty()) {
      std::vector<SnapshotRow> rows;
      std::string sid = source.snapshotId, acc = accountId;
      ses << "SELECT s.id, s.gateway_id, s.volume, s.state, s.request_id, s.created_at, s.completed_at, s.detail,"
             " s.scheduled FROM snapshots s JOIN gateways g ON g.id = s.gateway_id WHERE s.id = $1"
             " AND g.account_id = $2",
          use(sid), use(acc), into(rows), now;
      if (rows.empty()) return Status::notFound("no snapshot " + source.snapshotId);
      SnapshotInfo snap = snapshotOf(rows.front());
      if (snap.state != "completed") {
        return Status::busy("snapshot " + snap.id + " is " + snap.state + "; a volume is made from a completed one");
      }
      gid = snap.gatewayId;
      vol = snap.volume;
      const json& d = snap.detail;
      if (d.is_object() && d.contains("size") && d["size"].is_number_integer() && d.contains("chunk_size") &&
          d["chunk_size"].is_number_integer()) {
        srcSize = d["size"].get<int64_t>();
        srcChunk = d["chunk_size"].get<int64_t>();
      } else if (!volumeGeometry(gid, vol)) {
        return Status::invalid("snapshot " + snap.id + ": its size is not known (its volume is gone too)");
      }
      *args = {{"volume", vol}, {"snapshot", snap.id}};
      *record = {{"snapshot", snap.id}, {"gateway_id", gid}, {"volume", vol}};
    } else {
      if (!ownsGateway(ses, accountId, source.gatewayId)) return Status::notFound("no gateway " + source.gatewayId);
      gid = source.gatewayId;
      vol = source.volume;
      if (!volumeGeometry(gid, vol)) return Status::notFound("no volume " + vol + " on " + gid);
      *args = {{"volume", vol}, {"snapshot", "recovery-point"}};
      *record = {{"recovery_point", true}, {"gateway_id", gid}, {"volume", vol}};
    }
    if (srcSize <= 0 || srcChunk <= 0) return Status::invalid("the source's size is not known");
    if (*size == 0) *size = srcSize;
    if (*size < srcSize) {
      return Status::invalid("size " + std::to_string(*size) + " is smaller than the source's, " +
                             std::to_string(srcSize));
    }
    if (*chunkSize != 0 && *chunkSize != srcChunk) {
      return Status::invalid("a volume made from this source has its chunk size, " + std::to_string(srcChunk));
    }
    *chunkSize = srcChunk;
    // Another gateway's data is in its store: the gateways must share the provider's
    // store (gateway.store), each in its own prefix.
    if (gid != gatewayId) {
      if (storeTemplate_.empty()) {
        return Status::invalid("the source is on gateway " + gid +
                               ", and gateways' stores are their own (gateway.store is not set): a volume can be "
                               "made only from the same gateway's snapshots");
      }
      (*args)["store"] = gatewayStoreUrl(storeTemplate_, gid);
    }
    return Status::ok();
  });
}

Result<std::pair<VolumeInfo, RequestInfo>> Inventory::createVolume(const std::string& accountId,
                                                                   const std::string& gatewayId,
                                                                   const std::string& name, int64_t size,
                                                                   int64_t chunkSize, const VolumeSource* source) {
  json sourceArgs, sourceRecord;
  if (source != nullptr) {
    if (Status s = resolveSource(accountId, gatewayId, *source, &size, &chunkSize, &sourceArgs, &sourceRecord); !s) {
      return s;
    }
  }
  json args = {{"name", name}, {"size", size}, {"chunk_size", chunkSize}};
  if (source != nullptr) args["source"] = sourceArgs;
  if (Status s = checkRequest("volume.create", args); !s) return s;
  VolumeInfo v{gatewayId, name, size, chunkSize, "creating", "", nowMillis(), sourceRecord};
  auto r = outbox_.submit(
      accountId, gatewayId, "volume.create", args, [&](Poco::Data::Session& ses, const std::string& requestId) {
        if (!volumeState(ses, gatewayId, name).empty()) {
          return Status::busy("gateway " + gatewayId + " already has a volume " + name);
        }
        v.requestId = requestId;
        std::string gid = gatewayId, nm = name, st = v.state, rid = requestId;
        std::string src = sourceRecord.is_null() ? "" : sourceRecord.dump();
        Poco::Int64 sz = size, ch = chunkSize, at = v.createdAt;
        ses << "INSERT INTO volumes (gateway_id, name, size, chunk_size, state, request_id, created_at, source)"
               " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            use(gid), use(nm), use(sz), use(ch), use(st), use(rid), use(at), use(src), now;
        return Status::ok();
      });
  if (!r) {
    if (isUniqueViolation(r.status())) return Status::busy("gateway " + gatewayId + " already has a volume " + name);
    return r.status();
  }
  return std::make_pair(v, r.value());
}

Result<RequestInfo> Inventory::deleteVolume(const std::string& accountId, const std::string& gatewayId,
                                            const std::string& name) {
  json args = {{"name", name}};
  if (Status s = checkRequest("volume.delete", args); !s) return s;
  return outbox_.submit(accountId, gatewayId, "volume.delete", args,
                        [&](Poco::Data::Session& ses, const std::string& requestId) {
                          std::string state = volumeState(ses, gatewayId, name);
                          if (state.empty()) return Status::notFound("no volume " + name + " on " + gatewayId);
                          if (state != "available") {
                            return Status::busy("volume " + name + " is " + state + "; try again when it is available");
                          }
                          std::string gid = gatewayId, nm = name, rid = requestId;
                          // Conditional: of two deletes racing (PostgreSQL reads committed
                          // rows), only one finds the volume still available.
                          Poco::Data::Statement up(ses);
                          up << "UPDATE volumes SET state = 'deleting', request_id = $1 WHERE gateway_id = $2"
                                " AND name = $3 AND state = 'available'",
                              use(rid), use(gid), use(nm);
                          if (up.execute() != 1) return Status::busy("volume " + name + " is being deleted already");
                          return Status::ok();
                        });
}

Result<RequestInfo> Inventory::purgeGateway(const std::string& accountId, const std::string& lostId,
                                            std::string viaId) {
  if (storeTemplate_.find("{gateway}") == std::string::npos) {
    return Status::invalid(
        "the gateways' stores are their own (gateway.store, with {gateway}, is not set): no other gateway can "
        "clean up " +
        lostId + "'s; delete its volumes on it, or the data where it is kept");
  }
  if (viaId == lostId) return Status::invalid("a gateway cannot purge its own store; name another one as via");
  if (viaId.empty()) {
    // The first of the account's other gateways that holds its channel now.
    Status s = dbCall("choose a gateway for the purge", [&] {
      Poco::Data::Session ses = db_.session();
      if (!ownsGateway(ses, accountId, lostId)) return Status::notFound("no gateway " + lostId);
      std::string acc = accountId, lost = lostId;
      std::vector<std::string> ids;
      ses << "SELECT g.id FROM gateways g JOIN registrations r ON r.gateway_id = g.id"
             " WHERE g.account_id = $1 AND g.id <> $2 ORDER BY g.id",
          use(acc), use(lost), into(ids), now;
      if (ids.empty()) {
        return Status::busy("none of the account's other gateways is online to clean up " + lostId +
                            "'s store; name one as via (the request waits for it)");
      }
      viaId = ids.front();
      return Status::ok();
    });
    if (!s) return s;
  }
  json args = {{"store", gatewayStoreUrl(storeTemplate_, lostId)}, {"gateway_id", lostId}};
  if (Status s = checkRequest("store.purge", args); !s) return s;
  return outbox_.submit(accountId, viaId, "store.purge", args, [&](Poco::Data::Session& ses, const std::string&) {
    if (!ownsGateway(ses, accountId, lostId)) return Status::notFound("no gateway " + lostId);
    if (isOnline(ses, lostId)) {
      return Status::busy("gateway " + lostId +
                          " is online: a purge is for a lost gateway (delete its volumes "
                          "instead, or shut it down first)");
    }
    if (purgeUnderWay(ses, accountId, lostId)) {
      return Status::busy("a purge of " + lostId + "'s store is under way; wait for its request to finish");
    }
    return Status::ok();
  });
}

Result<std::vector<VolumeInfo>> Inventory::volumes(const std::string& accountId, const std::string& gatewayId) {
  std::vector<VolumeRow> rows;
  std::string gid = gatewayId;
  Status s = dbCall("list volumes", [&] {
    Poco::Data::Session ses = db_.session();
    if (!ownsGateway(ses, accountId, gatewayId)) return Status::notFound("no gateway " + gatewayId);
    ses << std::string(kVolumeColumns) + "WHERE gateway_id = $1 ORDER BY name", use(gid), into(rows), now;
    return Status::ok();
  });
  if (!s) return s;
  std::vector<VolumeInfo> out;
  for (const auto& r : rows) out.push_back(volumeOf(r));
  return out;
}

Result<VolumeInfo> Inventory::volume(const std::string& accountId, const std::string& gatewayId,
                                     const std::string& name) {
  auto all = volumes(accountId, gatewayId);
  if (!all) return all.status();
  for (auto& v : all.value()) {
    if (v.name == name) return v;
  }
  return Status::notFound("no volume " + name + " on " + gatewayId);
}

Result<std::pair<SnapshotInfo, RequestInfo>> Inventory::createSnapshot(const std::string& accountId,
                                                                       const std::string& gatewayId,
                                                                       const std::string& volume, bool scheduled) {
  SnapshotInfo snap{"snap-" + randomHex(10), gatewayId, volume, "pending", "", nowMillis(), 0, nullptr, scheduled};
  json args = {{"snapshot", snap.id}, {"volume", volume}};
  if (Status s = checkRequest("snapshot.create", args); !s) return s;
  auto r = outbox_.submit(
      accountId, gatewayId, "snapshot.create", args, [&](Poco::Data::Session& ses, const std::string& requestId) {
        std::string state = volumeState(ses, gatewayId, volume);
        if (state.empty()) return Status::notFound("no volume " + volume + " on " + gatewayId);
        if (state == "deleting") return Status::busy("volume " + volume + " is being deleted");
        snap.requestId = requestId;
        std::string id = snap.id, gid = gatewayId, vol = volume, st = snap.state, rid = requestId, detail;
        Poco::Int64 at = snap.createdAt, zero = 0;
        int sched = scheduled ? 1 : 0;
        ses << "INSERT INTO snapshots (id, gateway_id, volume, state, request_id, created_at,"
               " completed_at, detail, scheduled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            use(id), use(gid), use(vol), use(st), use(rid), use(at), use(zero), use(detail), use(sched), now;
        return Status::ok();
      });
  if (!r) return r.status();
  return std::make_pair(snap, r.value());
}

Result<std::optional<RequestInfo>> Inventory::deleteSnapshot(const std::string& accountId, const std::string& gatewayId,
                                                             const std::string& snapshotId) {
  auto all = snapshots(accountId, gatewayId, "");
  if (!all) return all.status();
  std::string volume, state;
  for (const auto& snap : all.value()) {
    if (snap.id == snapshotId) {
      volume = snap.volume;
      state = snap.state;
    }
  }
  if (volume.empty()) return Status::notFound("no snapshot " + snapshotId + " on " + gatewayId);
  if (state == "failed") {
    // A failed snapshot holds nothing on the gateway: its record just goes.
    std::string sid = snapshotId, gid = gatewayId;
    Status s = dbCall("delete failed snapshot", [&] {
      Poco::Data::Session ses = db_.session();
      ses << "DELETE FROM snapshots WHERE id = $1 AND gateway_id = $2 AND state = 'failed'", use(sid), use(gid), now;
      return Status::ok();
    });
    if (!s) return s;
    return std::optional<RequestInfo>();
  }
  json args = {{"snapshot", snapshotId}, {"volume", volume}};
  auto r = outbox_.submit(
      accountId, gatewayId, "snapshot.delete", args, [&](Poco::Data::Session& ses, const std::string& requestId) {
        std::string sid = snapshotId, gid = gatewayId, rid = requestId;
        std::vector<std::string> states;
        ses << "SELECT state FROM snapshots WHERE id = $1 AND gateway_id = $2", use(sid), use(gid), into(states), now;
        if (states.empty()) return Status::notFound("no snapshot " + snapshotId + " on " + gatewayId);
        if (states.front() != "completed") {
          return Status::busy("snapshot " + snapshotId + " is " + states.front());
        }
        ses << "UPDATE snapshots SET state = 'deleting', request_id = $1 WHERE id = $2", use(rid), use(sid), now;
        return Status::ok();
      });
  if (!r) return r.status();
  return std::optional<RequestInfo>(r.value());
}

Result<std::vector<SnapshotInfo>> Inventory::snapshots(const std::string& accountId, const std::string& gatewayId,
                                                       const std::string& volume) {
  std::vector<SnapshotRow> rows;
  std::string gid = gatewayId, vol = volume;
  Status s = dbCall("list snapshots", [&] {
    Poco::Data::Session ses = db_.session();
    if (!ownsGateway(ses, accountId, gatewayId)) return Status::notFound("no gateway " + gatewayId);
    if (volume.empty()) {
      ses << std::string(kSnapshotColumns) + "WHERE gateway_id = $1 ORDER BY created_at, id", use(gid), into(rows), now;
    } else {
      ses << std::string(kSnapshotColumns) + "WHERE gateway_id = $1 AND volume = $2 ORDER BY created_at, id", use(gid),
          use(vol), into(rows), now;
    }
    return Status::ok();
  });
  if (!s) return s;
  std::vector<SnapshotInfo> out;
  for (const auto& r : rows) out.push_back(snapshotOf(r));
  return out;
}

Status Inventory::settle(Poco::Data::Session& ses, const RequestInfo& r) {
  bool done = r.state == "done";
  std::string gid = r.gatewayId, rid = r.id;
  if (r.op == "volume.create" || r.op == "volume.delete") {
    std::string name = r.args.value("name", "");
    // Only if the volume still carries this request (a later request owns it otherwise).
    if (r.op == "volume.create" && done) {
      ses << "UPDATE volumes SET state = 'available' WHERE gateway_id = $1 AND name = $2 AND request_id = $3", use(gid),
          use(name), use(rid), now;
      if (r.result.contains("source") && r.result["source"].is_object()) recordSourceUsed(ses, r);
    } else if (r.op == "volume.delete" && !done) {
      ses << "UPDATE volumes SET state = 'available' WHERE gateway_id = $1 AND name = $2 AND request_id = $3", use(gid),
          use(name), use(rid), now;
    } else {
      ses << "DELETE FROM volumes WHERE gateway_id = $1 AND name = $2 AND request_id = $3", use(gid), use(name),
          use(rid), now;
      if (r.op == "volume.delete") {
        ses << "DELETE FROM snapshots WHERE gateway_id = $1 AND volume = $2", use(gid), use(name), now;
      }
    }
    return Status::ok();
  }
  if (r.op == "snapshot.create") {
    std::string sid = r.args.value("snapshot", ""), state = done ? "completed" : "failed";
    std::string detail = done ? r.result.dump() : r.error.dump();
    Poco::Int64 t = r.finishedAt;
    ses << "UPDATE snapshots SET state = $1, completed_at = $2, detail = $3 WHERE id = $4 AND request_id = $5",
        use(state), use(t), use(detail), use(sid), use(rid), now;
    return Status::ok();
  }
  if (r.op == "store.purge" && done) {
    // The lost gateway's store is empty: its record goes (with its volumes, snapshots
    // and requests), if it is still the same account's.
    std::string lost = r.args.value("gateway_id", "");
    // Not if it came back meanwhile (it then refused the purge of its volumes anyway).
    std::string again = lost;
    ses << "DELETE FROM gateways WHERE id = $1 AND account_id = (SELECT account_id FROM gateways WHERE id = $2)"
           " AND NOT EXISTS (SELECT 1 FROM registrations WHERE gateway_id = $3)",
        use(lost), use(gid), use(again), now;
    return Status::ok();
  }
  if (r.op == "snapshot.delete") {
    std::string sid = r.args.value("snapshot", "");
    if (done) {
      ses << "DELETE FROM snapshots WHERE id = $1 AND request_id = $2", use(sid), use(rid), now;
    } else {
      ses << "UPDATE snapshots SET state = 'completed' WHERE id = $1 AND request_id = $2", use(sid), use(rid), now;
    }
  }
  return Status::ok();
}

}  // namespace ferry::control
