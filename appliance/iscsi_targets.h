#pragma once
// Every volume is also an iSCSI target, `<iqn prefix>:<volume>`, LUN 1 (docs/iscsi.md).
// The agent runs the userspace target daemon tgtd and, per volume, nbdfuse, which
// shows the volume's NBD export as a file that tgtd serves: SCSI WRITE → the file →
// NBD WRITE, SYNCHRONIZE CACHE and FUA → fsync → NBD FLUSH, so a volume keeps one
// durability contract whichever protocol writes it.
//
// What should be served (the engine's volumes, the CHAP settings the provider sent,
// kept in DIR/chap.json) is reconciled with what tgtd serves every few seconds and at
// once after a change: a tgtd or nbdfuse that died is started again and its targets
// made again. Initiators logged in to each target are reported up the channel when they
// change: {"report": "iscsi", "at": T, "volumes": [{"name", "target", "state", "error",
// "initiators": [{"name", "address"}]}]}.

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ferry/chap.h"
#include "ferry/status.h"

namespace ferry::agent {

using ferry::ChapSetting;

struct IscsiConfig {
  bool enabled = false;
  std::string tgtd = "tgtd", tgtadm = "tgtadm", nbdfuse = "nbdfuse", fusermount = "fusermount3";
  std::string portal = "0.0.0.0:3260";
  int controlPort = 0;  // tgtd's management channel (-C N): one tgtd per N on a machine
  std::string iqnPrefix = "iqn.2026-11.io.ferry";
  std::string nbdHost = "127.0.0.1";  // where the engine's NBD exports are
  int nbdPort = 10809;
  std::string dir;  // mounts, chap.json, tgtd's log and pid file
  int checkSeconds = 5;
};

class IscsiTargets {
 public:
  // The engine's volumes, and how many times it has been started: when that changes,
  // every nbdfuse (whose NBD connections went with the old engine) is made again.
  struct EngineView {
    std::vector<std::string> volumes;
    int generation = 0;
  };
  using ListVolumes = std::function<Result<EngineView>()>;
  using Report = std::function<bool(const std::string& frame)>;
  IscsiTargets(IscsiConfig config, ListVolumes list, Report report)
      : cfg_(std::move(config)), list_(std::move(list)), report_(std::move(report)) {}
  ~IscsiTargets() { stop(); }

  bool enabled() const { return cfg_.enabled; }
  // iSCSI names are lower case, without '_' (RFC 3722): "Disk_1" → "<prefix>:disk-1".
  // Two volumes that map to one name: the second is not served (its error says so).
  std::string targetName(const std::string& volume) const;

  // Reads DIR/chap.json (unreadable: iSCSI stays off, the reason in status()), stops
  // what a killed agent left (its tgtd, stale mounts). An error: the directory.
  Status load();
  void start();
  // Stops tgtd and every nbdfuse (before the engine stops).
  void stop();

  // Each waits for a reconcile round that began after the call (all of tgtd, nbdfuse
  // and tgtadm is run from one thread, whose end the children follow).
  // Serves a volume the engine has now (after volume.create); the error, if any, is
  // also shown in status() and retried every round.
  Status ensure(const std::string& volume);
  // Stops serving a volume (before the engine deletes it) until restore().
  Status withdraw(const std::string& volume);
  // After the engine's delete: served again if it failed; its CHAP forgotten if not.
  void restore(const std::string& volume, bool deleted);
  // Keeps and applies a volume's CHAP setting (empty initiator user: none).
  Status setChap(const std::string& volume, const ChapSetting& chap);

  // Per volume: target, state, error, chap users (never secrets), initiators — as of
  // the last round (it does not wait for one in progress).
  nlohmann::json status();

 private:
  struct Served {
    int tid = 0;           // 0: no target in tgtd
    bool open = false;     // initiators allowed (bound last, after its CHAP)
    pid_t fuse = 0;        // nbdfuse, 0: none
    ChapSetting chap;      // as bound in tgtd
    std::string error;
    nlohmann::json initiators = nlohmann::json::array();
  };
  void loop();
  void reconcileLocked();
  Status waitRound(std::unique_lock<std::mutex>& lock);
  Status ensureTgtdLocked();
  Status serveLocked(const std::string& volume, Served& s);
  void unserveLocked(const std::string& volume, Served& s);
  Status applyChapLocked(const std::string& volume, Served& s);
  Status openLocked(Served& s);
  void dropTargetLocked(Served& s);
  void refreshInitiatorsLocked();
  void reportLocked();
  nlohmann::json statusLocked() const;
  Status saveChapLocked();
  Result<std::string> tgtadm(std::vector<std::string> args);
  std::string mountDir(const std::string& volume) const { return cfg_.dir + "/mnt/" + volume; }

  IscsiConfig cfg_;
  ListVolumes list_;
  Report report_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<bool> stopping_{false};  // read between volumes of a round, without mu_
  uint64_t asked_ = 0, done_ = 0;  // rounds asked for, the last one finished
  std::thread thread_;
  pid_t tgtd_ = 0;
  std::map<std::string, ChapSetting> chap_;  // wanted, by volume
  std::map<std::string, std::string> accounts_;  // in tgtd: user → secret
  std::map<std::string, Served> served_;
  std::set<std::string> withdrawn_;
  std::string tgtdError_;
  std::string loadError_;  // chap.json unreadable: nothing is served
  nlohmann::json reported_;  // the last report the channel took
  int roundsSinceReport_ = 0;  // a report is sent again every so many rounds
  int engineGeneration_ = -1;
  mutable std::mutex statusMu_;  // the last round's status, readable during a round
  nlohmann::json status_;
};

}  // namespace ferry::agent
