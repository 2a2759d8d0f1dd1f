#pragma once
// Every interval (a minute), the gateway's metrics from the volume engine's stats, sent
// up the channel as a report frame (server/gateway_metrics.h has the format): per
// volume and for the gateway, the cache hit ratio of the reads in the interval, cached
// and dirty bytes, upload-buffer use, and bytes moved to and from the store in the
// interval. Reports made while the channel is down wait (up to an hour of them) and go
// when it is back.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "engine_client.h"
#include "ferry/status.h"

namespace ferry::agent {

constexpr size_t kMaxUnsentReports = 60;

class MetricsReporter {
 public:
  // send: puts a frame on the channel; false when it is down (the report waits).
  using Send = std::function<bool(const std::string& frame)>;
  MetricsReporter(EngineClient& engine, Send send, int intervalSeconds)
      : engine_(engine), send_(std::move(send)), interval_(intervalSeconds) {}
  ~MetricsReporter() { stop(); }
  void start();
  void stop();

  // One report: the engine's counters now, against those of the last call.
  Result<nlohmann::json> sample(int64_t at);
  size_t unsent() const;

 private:
  struct Counters {
    uint64_t up = 0, down = 0, hits = 0, misses = 0;
  };
  void tick();

  EngineClient& engine_;
  Send send_;
  const int interval_;
  std::map<std::string, Counters> last_;  // by volume
  std::deque<std::string> unsent_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ferry::agent
