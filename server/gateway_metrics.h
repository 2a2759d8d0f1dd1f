#pragma once
// Gateway metrics over time. Every minute the agent sends a report up its channel
// (a frame that is not an answer and asks for none):
//
//   {"report": "metrics", "at": UNIX_SECONDS, "interval": SECONDS,
//    "gateway": {"cache_hit_ratio": R|null, "cached_bytes": N, "dirty_bytes": N,
//                "upload_buffer_used": R, "bytes_up": N, "bytes_down": N},
//    "volumes": [{"name": "v", "cache_hit_ratio": R|null, "cached_bytes": N,
//                 "dirty_bytes": N, "bytes_up": N, "bytes_down": N}, …]}
//
// bytes_up / bytes_down: moved to and from the store during the interval; hit ratio:
// of the reads in the interval (null: none); upload_buffer_used: dirty bytes over the
// upload buffer (0..1). Samples are kept for a retention period and served through the
// API for the console's charts.

#include <nlohmann/json.hpp>
#include <string>

#include "db.h"

namespace ferry::control {

constexpr size_t kMaxReportVolumes = 1024;

class GatewayMetrics {
 public:
  explicit GatewayMetrics(Db& db) : db_(db) {}
  // Checks a report (kInvalidArgument with the reason) and stores it; a repeated
  // report (same instant) changes nothing.
  Status record(const std::string& gatewayId, const nlohmann::json& report);
  // Samples from since to until (Unix seconds, inclusive), oldest first, at most limit
  // (the newest). volume: "" = the gateway's totals, "*" = every volume and the totals,
  // else that volume. kNotFound unless the gateway is the account's.
  Result<nlohmann::json> samples(const std::string& accountId, const std::string& gatewayId, int64_t since,
                                 int64_t until, const std::string& volume, int limit);
  // Removes samples older than before; how many went.
  Result<int64_t> prune(int64_t before);

 private:
  Db& db_;
};

}  // namespace ferry::control
