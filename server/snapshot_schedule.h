#pragma once
// Snapshot schedules: a volume's snapshot every N hours, keeping the last K that a
// schedule took (older ones are deleted through the usual snapshot.delete request;
// snapshots taken by hand are never touched). Every server of a farm runs runDue();
// a due schedule is claimed by moving its next time with a conditional UPDATE, so
// one server takes each snapshot. A run missed while no server was up is not made up:
// the next run is one interval after the late one; nor is a run made while the last
// scheduled snapshot still waits for an offline gateway.

#include <cstdint>
#include <string>
#include <vector>

#include "db.h"
#include "inventory.h"

namespace ferry::control {

constexpr int kMaxScheduleHours = 168;
constexpr int kMaxScheduleKeep = 100;

struct SnapshotSchedule {
  std::string gatewayId, volume;
  int everyHours = 0, keep = 0;
  int64_t nextAt = 0;  // Unix seconds
};

class SnapshotSchedules {
 public:
  // hourSeconds: the length of an hour (tests make it short).
  SnapshotSchedules(Db& db, Inventory& inventory, int64_t hourSeconds = 3600)
      : db_(db), inventory_(inventory), hour_(hourSeconds) {}

  // Sets (or replaces) the volume's schedule; the first snapshot one interval from now.
  Result<SnapshotSchedule> set(const std::string& accountId, const std::string& gatewayId, const std::string& volume,
                               int everyHours, int keep);
  Result<SnapshotSchedule> get(const std::string& accountId, const std::string& gatewayId, const std::string& volume);
  Status remove(const std::string& accountId, const std::string& gatewayId, const std::string& volume);

  // Takes the snapshots due at now and deletes what each schedule no longer keeps;
  // the gateways it made requests for (to be routed).
  Result<std::vector<std::string>> runDue(int64_t now);

 private:
  void prune(const std::string& accountId, const std::string& gatewayId, const std::string& volume, int keep);
  bool pendingScheduled(const std::string& accountId, const std::string& gatewayId, const std::string& volume);

  Db& db_;
  Inventory& inventory_;
  const int64_t hour_;
};

}  // namespace ferry::control
