#pragma once
// The requests this gateway has seen, by id, in STATE/agent.db (SQLite): delivery is at
// least once, so a request can come again (a connection broke before the answer went
// up; the provider's server died). A request already answered is answered again from
// here, never applied twice; one begun but not answered (the agent died while
// applying it) is applied again — every operation is idempotent for that.

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ferry/sqlite.h"
#include "ferry/status.h"

namespace ferry::agent {

class RequestLog {
 public:
  static Result<std::unique_ptr<RequestLog>> open(const std::string& path);

  // The answer given to id before, if it was answered.
  Result<std::optional<nlohmann::json>> answerOf(const std::string& id);
  Status begin(const std::string& id, const std::string& op);
  Status finish(const std::string& id, const nlohmann::json& answer);
  // Requests applied (answered), all time.
  int64_t answered();

 private:
  explicit RequestLog(SqliteDb db) : db_(std::move(db)) {}
  std::mutex mutex_;
  SqliteDb db_;
};

}  // namespace ferry::agent
