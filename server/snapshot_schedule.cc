#include "snapshot_schedule.h"

#include <Poco/Data/Session.h>
#include <Poco/Data/Statement.h>
#include <Poco/Tuple.h>

#include <algorithm>
#include <iostream>

namespace ferry::control {

using namespace Poco::Data::Keywords;

Result<SnapshotSchedule> SnapshotSchedules::set(const std::string& accountId, const std::string& gatewayId,
                                                const std::string& volume, int everyHours, int keep) {
  if (everyHours < 1 || everyHours > kMaxScheduleHours) {
    return Status::invalid("every_hours must be from 1 to " + std::to_string(kMaxScheduleHours));
  }
  if (keep < 1 || keep > kMaxScheduleKeep)
    return Status::invalid("keep must be from 1 to " + std::to_string(kMaxScheduleKeep));
  auto v = inventory_.volume(accountId, gatewayId, volume);  // the account's volume, else 404
  if (!v) return v.status();
  SnapshotSchedule out{gatewayId, volume, everyHours, keep, nowMillis() / 1000 + everyHours * hour_};
  std::string gid = gatewayId, vol = volume;
  Poco::Int64 next = out.nextAt;
  Status s = dbCall("set snapshot schedule", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "INSERT INTO snapshot_schedules (gateway_id, volume, every_hours, keep_last, next_at)"
           " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (gateway_id, volume) DO UPDATE SET"
           " every_hours = excluded.every_hours, keep_last = excluded.keep_last, next_at = excluded.next_at",
        use(gid), use(vol), use(everyHours), use(keep), use(next), now;
    return Status::ok();
  });
  if (!s) {
    // The volume went between the check and the insert (its row is the parent).
    if (s.message().find("FOREIGN KEY") != std::string::npos || s.message().find("foreign key") != std::string::npos) {
      return Status::notFound("no volume " + volume + " on " + gatewayId);
    }
    return s;
  }
  return out;
}

Result<SnapshotSchedule> SnapshotSchedules::get(const std::string& accountId, const std::string& gatewayId,
                                                const std::string& volume) {
  auto v = inventory_.volume(accountId, gatewayId, volume);
  if (!v) return v.status();
  std::string gid = gatewayId, vol = volume;
  std::vector<int> every, keep;
  std::vector<Poco::Int64> next;
  Status s = dbCall("read snapshot schedule", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT every_hours, keep_last, next_at FROM snapshot_schedules WHERE gateway_id = $1 AND volume = $2",
        use(gid), use(vol), into(every), into(keep), into(next), now;
    return Status::ok();
  });
  if (!s) return s;
  if (every.empty()) return Status::notFound("volume " + volume + " has no snapshot schedule");
  return SnapshotSchedule{gatewayId, volume, every[0], keep[0], next[0]};
}

Status SnapshotSchedules::remove(const std::string& accountId, const std::string& gatewayId,
                                 const std::string& volume) {
  auto v = inventory_.volume(accountId, gatewayId, volume);
  if (!v) return v.status();
  std::string gid = gatewayId, vol = volume;
  size_t gone = 0;
  Status s = dbCall("remove snapshot schedule", [&] {
    Poco::Data::Session ses = db_.session();
    Poco::Data::Statement st(ses);
    st << "DELETE FROM snapshot_schedules WHERE gateway_id = $1 AND volume = $2", use(gid), use(vol);
    gone = st.execute();
    return Status::ok();
  });
  if (!s) return s;
  if (gone == 0) return Status::notFound("volume " + volume + " has no snapshot schedule");
  return Status::ok();
}

Result<std::vector<std::string>> SnapshotSchedules::runDue(int64_t nowSeconds) {
  using Row = Poco::Tuple<std::string, std::string, int, int, Poco::Int64, std::string>;
  std::vector<Row> due;
  Poco::Int64 t = nowSeconds;
  Status s = dbCall("read due snapshot schedules", [&] {
    Poco::Data::Session ses = db_.session();
    ses << "SELECT s.gateway_id, s.volume, s.every_hours, s.keep_last, s.next_at, g.account_id"
           " FROM snapshot_schedules s JOIN gateways g ON g.id = s.gateway_id WHERE s.next_at <= $1",
        use(t), into(due), now;
    return Status::ok();
  });
  if (!s) return s;
  std::vector<std::string> touched;
  for (const Row& r : due) {
    std::string gid = r.get<0>(), vol = r.get<1>(), account = r.get<5>();
    Poco::Int64 was = r.get<4>(), next = was + r.get<2>() * hour_;
    if (next <= nowSeconds) next = nowSeconds + r.get<2>() * hour_;  // late: no catching up
    size_t claimed = 0;
    Status c = dbCall("claim a snapshot schedule", [&] {
      Poco::Data::Session ses = db_.session();
      Poco::Data::Statement st(ses);
      st << "UPDATE snapshot_schedules SET next_at = $1 WHERE gateway_id = $2 AND volume = $3 AND next_at = $4",
          use(next), use(gid), use(vol), use(was);
      claimed = st.execute();
      return Status::ok();
    });
    if (!c) return c;
    if (claimed == 0) continue;  // another server took it
    // The last one still waits for the gateway (offline): one pending is enough, not
    // one per missed run.
    if (pendingScheduled(account, gid, vol)) continue;
    auto made = inventory_.createSnapshot(account, gid, vol, true);
    if (!made) {
      std::cerr << "ferry-control: scheduled snapshot of " << vol << " on " << gid << ": " << made.status().toString()
                << "\n";
      continue;
    }
    prune(account, gid, vol, r.get<3>());
    if (std::find(touched.begin(), touched.end(), gid) == touched.end()) touched.push_back(gid);
  }
  return touched;
}

bool SnapshotSchedules::pendingScheduled(const std::string& accountId, const std::string& gatewayId,
                                         const std::string& volume) {
  auto all = inventory_.snapshots(accountId, gatewayId, volume);
  if (!all) return false;
  for (const auto& s : all.value()) {
    if (s.scheduled && s.state == "pending") return true;
  }
  return false;
}

void SnapshotSchedules::prune(const std::string& accountId, const std::string& gatewayId, const std::string& volume,
                              int keep) {
  auto all = inventory_.snapshots(accountId, gatewayId, volume);
  if (!all) return;
  // Newest first: the first `keep` that a schedule took and that did not fail stay.
  int kept = 0;
  for (auto it = all.value().rbegin(); it != all.value().rend(); ++it) {
    if (!it->scheduled || it->state == "deleting") continue;
    if (it->state != "failed" && kept < keep) {
      ++kept;
      continue;
    }
    if (it->state == "pending") continue;  // not finished: next time
    auto gone = inventory_.deleteSnapshot(accountId, gatewayId, it->id);
    if (!gone) {
      std::cerr << "ferry-control: scheduled snapshot " << it->id << " past keep: " << gone.status().toString() << "\n";
    }
  }
}

}  // namespace ferry::control
