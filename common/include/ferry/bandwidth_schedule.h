#pragma once
// A gateway's bandwidth limits and their schedule, as the customer sets them (the
// provider's API checks them; the agent applies them in the gateway's time zone):
//
//   {"upload_rate": 1048576, "download_rate": 0,          outside every interval
//    "schedule": [{"days": ["mon", "tue", "wed", "thu", "fri"],
//                  "start": "08:00", "end": "18:00",      local time, [start, end)
//                  "upload_rate": 524288, "download_rate": 0}]}
//
// Rates are bytes per second (or size strings like "512K"); 0 or absent = no limit.
// Intervals may not overlap on a day; "end" may be "24:00".

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "ferry/status.h"

namespace ferry {

// A limit lower than this would starve the gateway (a lease renewal, a 1 MiB chunk a
// minute): refused.
constexpr int64_t kMinBandwidthRate = 8 << 10;
constexpr size_t kMaxBandwidthIntervals = 32;

struct BandwidthRates {
  int64_t upload = 0, download = 0;  // bytes per second, 0 = no limit
  bool operator==(const BandwidthRates&) const = default;
};

struct BandwidthInterval {
  uint8_t days = 0;        // bit d: weekday d, 0 = Sunday
  int start = 0, end = 0;  // minutes after local midnight, [start, end)
  BandwidthRates rates;
};

struct BandwidthSchedule {
  BandwidthRates standing;
  std::vector<BandwidthInterval> intervals;

  // Checks everything; errors name the field and the interval (from 1).
  static Result<BandwidthSchedule> fromJson(const nlohmann::json& in);
  // The canonical form (rates as numbers, days in week order).
  nlohmann::json toJson() const;
  // The rates in force on a weekday (0 = Sunday) at a minute after local midnight.
  BandwidthRates at(int weekday, int minute) const;
  // The rates in force at a Unix instant, given the local offset from UTC then.
  BandwidthRates atInstant(int64_t utc, int32_t offsetSeconds) const;
};

}  // namespace ferry
