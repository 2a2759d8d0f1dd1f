#pragma once
// HTTP health checks of the backends (DESIGN.md "Balancer", control plane): every
// interval each backend is asked GET scheme://address:port/path; a 2xx answer within the
// timeout is a success. A backend goes down after `fall` failures in a row and comes
// back after `rise` successes; the first round decides at once, so a node that starts
// does not wait rise × interval to forward.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config.h"

namespace ferry::balancer {

struct BackendHealth {
  bool up = false;
  int streak = 0;          // successes (up) or failures (down) in a row towards a change
  std::string lastError;   // why the last probe failed ("" when it passed)
  uint64_t checks = 0;
  uint64_t transitions = 0;
};

class HealthChecker {
 public:
  // onChange runs (on a checker thread) whenever a backend goes up or down.
  HealthChecker(HealthConfig cfg, std::vector<BackendConfig> backends, std::function<void()> onChange);
  ~HealthChecker();
  // onRound runs after every probe of the first backend (once per interval), on its
  // checker thread. Set before start().
  void setOnRound(std::function<void()> onRound) { onRound_ = std::move(onRound); }
  // Probes every backend once (in parallel) and takes the answers as they are.
  void firstRound();
  void start();
  void stop();
  std::vector<BackendHealth> snapshot() const;

  // One probe: "" when healthy, else why not.
  static std::string probe(const HealthConfig& cfg, uint32_t address);

 private:
  void loop(size_t index);
  void record(size_t index, const std::string& error, bool first);

  HealthConfig cfg_;
  std::vector<BackendConfig> backends_;
  std::function<void()> onChange_;
  std::function<void()> onRound_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<BackendHealth> state_;
  std::vector<std::thread> threads_;
};

}  // namespace ferry::balancer
