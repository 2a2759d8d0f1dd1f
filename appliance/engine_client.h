#pragma once
// The volume engine's admin interface as the agent calls it (docs/admin.md): one JSON
// line to STATE/admin.sock of the supervised `nbdkit ferry`, one JSON line back.

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
  const std::string& socketPath() const { return path_; }

 private:
  std::string path_;
};

}  // namespace ferry::agent
