#pragma once
// A gateway's time zone, for schedules (bandwidth limits): the UTC offset in force at
// an instant, read from the system's IANA time zone files (TZif, RFC 8536) — the
// transitions they list, then the POSIX TZ rule at their end for later years.
// Independent of the process's TZ and of the C library's global time zone state, so
// any thread may use it.

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/status.h"

namespace ferry {

class TimeZone {
 public:
  TimeZone() = default;  // UTC
  // "UTC" or an IANA name ("Europe/Berlin", "America/Sao_Paulo") found under $TZDIR
  // or /usr/share/zoneinfo. kInvalidArgument for a malformed or unknown name.
  static Result<TimeZone> load(const std::string& name);
  // Reads a TZif image (for tests and for load()).
  static Result<TimeZone> parse(const std::string& name, const std::string& tzif);

  const std::string& name() const { return name_; }
  // Seconds east of UTC at the instant utc (Unix seconds).
  int32_t offsetAt(int64_t utc) const;

  // A POSIX TZ rule date ("M3.5.0", "J60", "59") and the local time it takes effect.
  struct RuleDate {
    char kind = 'M';  // 'J' (1..365, no Feb 29), 'D' (0..365), 'M' (month.week.day)
    int day = 0, week = 0, month = 0;
    int32_t time = 7200;  // seconds after local midnight (may be negative or > 24 h)
  };

 private:
  bool parseRule(const std::string& tz);
  int32_t ruleOffset(int64_t utc) const;

  std::string name_ = "UTC";
  std::vector<int64_t> transitions_;  // instants, ascending
  std::vector<int32_t> offsets_;      // the offset from each transition on
  int32_t initial_ = 0;               // before the first transition
  // The footer rule, for instants after the last transition.
  bool hasRule_ = false, ruleDst_ = false;
  int32_t stdOffset_ = 0, dstOffset_ = 0;
  RuleDate start_, end_;
};

}  // namespace ferry
