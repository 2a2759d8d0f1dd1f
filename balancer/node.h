#pragma once
// A balancer node's control plane (`ferry-balancer node`): health checks decide which
// backends are up, the Maglev ring is built over those in configuration order, and the
// data plane is programmed with it; /metrics and /status.json say what it sees.

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "config.h"
#include "dataplane.h"
#include "health.h"

namespace ferry::balancer {

class Node {
 public:
  Node(BalancerConfig cfg, std::unique_ptr<Dataplane> dataplane);
  ~Node();
  // Starts the data plane, runs one round of health checks, programs the ring, then
  // keeps checking.
  Status start();
  void stop();

  std::string metricsText();
  nlohmann::json status();

 private:
  void reprogram();

  BalancerConfig cfg_;
  std::unique_ptr<Dataplane> dp_;
  std::unique_ptr<HealthChecker> health_;
  std::mutex mu_;  // one reprogram at a time; guards what follows
  std::vector<uint32_t> ring_;
  std::vector<bool> up_;
  uint64_t ringUpdates_ = 0;
  std::string lastError_;
};

}  // namespace ferry::balancer
