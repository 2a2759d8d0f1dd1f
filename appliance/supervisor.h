#pragma once
// Runs the volume engine, `nbdkit ferry`, beside the agent: started once the gateway
// knows its object store, restarted (with a growing pause) if it exits, stopped with
// SIGTERM — which makes the engine upload what is dirty — when the agent stops. nbdkit
// runs with --exit-with-parent: an agent killed outright takes it along.

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ferry/status.h"

namespace ferry::agent {

struct EngineConfig {
  std::string nbdkit = "nbdkit";
  std::string plugin = "ferry";  // a name nbdkit finds, or the .so's path
  std::string stateDir;          // the engine's state (metadata, cache, admin socket)
  std::string store;             // the object store URL
  std::string host = "0.0.0.0";
  int port = 10809;
  std::vector<std::string> extra;        // more plugin parameters (cache-size=2G …)
  std::vector<std::string> environment;  // NAME=VALUE for nbdkit (e.g. the store's credentials)
  std::string logFile;
  int stopSeconds = 120;  // SIGTERM, then SIGKILL after this
};

class Supervisor {
 public:
  explicit Supervisor(EngineConfig config) : cfg_(std::move(config)) {}
  ~Supervisor() { stop(); }
  Status start();
  void stop();
  bool running() const { return pid_ > 0; }
  int restarts() const { return restarts_; }
  std::string adminSocket() const { return cfg_.stateDir + "/admin.sock"; }

 private:
  pid_t spawn();
  void watch();

  EngineConfig cfg_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::atomic<pid_t> pid_{0};
  std::atomic<int> restarts_{0};
};

}  // namespace ferry::agent
