#pragma once
// The gateway's bandwidth limits (the provider's bandwidth.set): the schedule is kept
// in STATE/bandwidth.json (so it holds across restarts and while the provider is out of
// reach) and applied to the volume engine's limits ({"op":"limits"}) in the gateway's
// time zone. Every check interval it works out the rates in force and sets them again:
// a restarted engine (which starts unlimited) gets them back within one interval.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "engine_client.h"
#include "ferry/bandwidth_schedule.h"
#include "ferry/status.h"
#include "ferry/timezone.h"

namespace ferry::agent {

class BandwidthKeeper {
 public:
  BandwidthKeeper(std::string stateDir, EngineClient& engine, int checkSeconds)
      : path_(std::move(stateDir) + "/bandwidth.json"), engine_(engine), checkSeconds_(checkSeconds) {}
  ~BandwidthKeeper() { stop(); }

  // Reads the kept setting, if any. A damaged file (or a time zone the system no longer
  // has) is an error, also shown in status(); the gateway then runs without limits
  // until the provider sends a setting again.
  Status load();
  void start();
  void stop();

  // bandwidth.set {revision, timezone, limits}: a revision older than the one kept
  // changes nothing (a late redelivery); else it is kept and applied at once.
  Result<nlohmann::json> set(const nlohmann::json& args);
  // For the local page: the setting, the rates in force, whether the engine has them.
  nlohmann::json status() const;

 private:
  // Sets the rates in force now on the engine.
  void apply();

  const std::string path_;
  EngineClient& engine_;
  const int checkSeconds_;
  std::mutex applyMu_;     // one apply() at a time: the rates worked out are the ones sent
  mutable std::mutex mu_;  // guards everything below
  int64_t revision_ = 0;
  TimeZone zone_;
  BandwidthSchedule schedule_;
  BandwidthRates inForce_;
  bool applied_ = false;
  std::string lastError_;  // of the last apply
  std::string loadError_;  // the kept setting could not be read at start
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ferry::agent
