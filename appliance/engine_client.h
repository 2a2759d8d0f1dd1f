#pragma once
// The volume engine's admin interface as the agent calls it (docs/admin.md): one JSON
// line to STATE/admin.sock of the supervised `nbdkit ferry`, one JSON line back.

#include <atomic>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "ferry/status.h"

namespace ferry::agent {

class EngineClient {
 public:
  explicit EngineClient(std::string socketPath) : path_(std::move(socketPath)) {}
  // The engine's answer when it says ok; its error (with the errno it names) when not;
  // kUnavailable when the engine cannot be reached.
  Result<nlohmann::json> call(const nlohmann::json& request, int timeoutSeconds = 30);
  // Waits (up to seconds) until the engine answers: it may be starting or restarting.
  Status waitReady(int seconds);
  // Calls (and waits) already under way stop waiting for their answer and fail
  // (kUnavailable) within a fraction of a second; later calls are not affected. For
  // an agent that stops while a request is being applied: what the engine does with
  // it is not awaited (the request log applies it again after the restart).
  void cancelCalls() { ++cancels_; }
  // For good: every call, under way or later, fails at once (the agent is stopping).
  void stopCalls() {
    stopped_ = true;
    ++cancels_;
  }
  bool callsStopped() const { return stopped_.load(); }
  const std::string& socketPath() const { return path_; }

 private:
  Result<nlohmann::json> callAt(const nlohmann::json& request, int timeoutSeconds, uint64_t epoch);
  bool cancelledSince(uint64_t epoch) const { return stopped_.load() || cancels_.load() != epoch; }

  std::string path_;
  std::atomic<uint64_t> cancels_{0};
  std::atomic<bool> stopped_{false};
};

}  // namespace ferry::agent
