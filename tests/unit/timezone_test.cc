// TimeZone against the C library: for zones with and without summer time, north and
// south, odd offsets, and years past the transitions the files list (the POSIX rule).

#include "ferry/timezone.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

namespace ferry {
namespace {

// What glibc says the offset is (only this test thread sets TZ).
long libcOffset(const std::string& zone, int64_t utc) {
  setenv("TZ", (":" + zone).c_str(), 1);
  tzset();
  time_t t = static_cast<time_t>(utc);
  struct tm tm {};
  localtime_r(&t, &tm);
  return tm.tm_gmtoff;
}

TEST(TimeZoneTest, MatchesTheCLibraryFrom1980To2070) {
  for (const char* zone :
       {"Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Sao_Paulo", "Asia/Kolkata", "Pacific/Chatham",
        "Africa/Casablanca", "America/St_Johns", "Europe/London", "Asia/Tokyo", "Etc/GMT+5"}) {
    auto tz = TimeZone::load(zone);
    ASSERT_TRUE(tz) << zone << ": " << tz.status().toString();
    int mismatches = 0;
    // Every 5 hours 13 minutes: lands on every hour of the day and near every change.
    for (int64_t t = 315532800; t < 3155760000 && mismatches < 5; t += 5 * 3600 + 13 * 60) {
      long want = libcOffset(zone, t);
      if (tz.value().offsetAt(t) != want) {
        ++mismatches;
        ADD_FAILURE() << zone << " at " << t << ": " << tz.value().offsetAt(t) << " != libc " << want;
      }
    }
  }
  unsetenv("TZ");
  tzset();
}

TEST(TimeZoneTest, ExactChangesInBerlin) {
  auto tz = TimeZone::load("Europe/Berlin");
  ASSERT_TRUE(tz);
  // 2050-03-27 01:00 UTC: summer time begins (past the listed transitions).
  int64_t change = 2531955600;
  EXPECT_EQ(tz.value().offsetAt(change - 1), 3600);
  EXPECT_EQ(tz.value().offsetAt(change), 7200);
}

TEST(TimeZoneTest, UtcAndBadNames) {
  auto utc = TimeZone::load("UTC");
  ASSERT_TRUE(utc);
  EXPECT_EQ(utc.value().offsetAt(1700000000), 0);
  for (const char* bad : {"", "../../etc/passwd", "/etc/localtime", "Europe/Nowhere", "Europe Berlin"}) {
    auto tz = TimeZone::load(bad);
    ASSERT_FALSE(tz) << bad;
    EXPECT_EQ(tz.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(TimeZoneTest, RefusesDamagedFiles) {
  EXPECT_FALSE(TimeZone::parse("x", "not a tzif file at all, not at all, not at all"));
  std::string header = "TZif2" + std::string(15, '\0') + std::string(24, '\xff');
  EXPECT_FALSE(TimeZone::parse("x", header));
}

}  // namespace
}  // namespace ferry
