#include "ferry/bandwidth_schedule.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

using json = nlohmann::json;

TEST(BandwidthScheduleTest, ReadsAndEvaluatesASchedule) {
  auto s = BandwidthSchedule::fromJson(json::parse(R"({
    "upload_rate": "1M", "download_rate": 0,
    "schedule": [{"days": ["mon","tue","wed","thu","fri"], "start": "08:00", "end": "18:00",
                  "upload_rate": 65536, "download_rate": "128K"},
                 {"days": ["sat"], "start": "00:00", "end": "24:00", "upload_rate": 0}]})"));
  ASSERT_TRUE(s) << s.status().toString();
  EXPECT_EQ(s.value().at(1, 8 * 60), (BandwidthRates{65536, 131072}));       // Monday 08:00
  EXPECT_EQ(s.value().at(1, 18 * 60 - 1), (BandwidthRates{65536, 131072}));  // 17:59
  EXPECT_EQ(s.value().at(1, 18 * 60), (BandwidthRates{1 << 20, 0}));         // 18:00: standing
  EXPECT_EQ(s.value().at(0, 12 * 60), (BandwidthRates{1 << 20, 0}));         // Sunday
  EXPECT_EQ(s.value().at(6, 23 * 60 + 59), (BandwidthRates{0, 0}));          // Saturday: none
  // 2026-11-30 is a Monday; 07:30 UTC is 08:30 in UTC+1.
  int64_t mon0730 = 1796023800;
  EXPECT_EQ(s.value().atInstant(mon0730, 0), (BandwidthRates{1 << 20, 0}));
  EXPECT_EQ(s.value().atInstant(mon0730, 3600), (BandwidthRates{65536, 131072}));
  // Canonical form round-trips.
  json canon = s.value().toJson();
  EXPECT_EQ(canon["schedule"][0]["days"], json::parse(R"(["mon","tue","wed","thu","fri"])"));
  EXPECT_EQ(canon["schedule"][1]["end"], "24:00");
  auto again = BandwidthSchedule::fromJson(canon);
  ASSERT_TRUE(again);
  EXPECT_EQ(again.value().toJson(), canon);
}

TEST(BandwidthScheduleTest, EmptyMeansNoLimits) {
  auto s = BandwidthSchedule::fromJson(json::object());
  ASSERT_TRUE(s);
  EXPECT_EQ(s.value().at(3, 600), (BandwidthRates{0, 0}));
}

TEST(BandwidthScheduleTest, RefusesBadInputWithAClearReason) {
  struct Case {
    const char* in;
    const char* says;
  } cases[] = {
      {R"([])", "JSON object"},
      {R"({"upload":5})", "unknown field 'upload'"},
      {R"({"upload_rate":-1})", "bytes per second"},
      {R"({"upload_rate":100})", "at least"},
      {R"({"upload_rate":"fast"})", "bytes per second"},
      {R"({"schedule":{}})", "list of intervals"},
      {R"({"schedule":[{"days":[],"start":"01:00","end":"02:00"}]})", "interval 1: days"},
      {R"({"schedule":[{"days":["funday"],"start":"01:00","end":"02:00"}]})", "\"funday\" is not one of"},
      {R"({"schedule":[{"days":["mon"],"start":"1:00","end":"02:00"}]})", "start must be a time"},
      {R"({"schedule":[{"days":["mon"],"start":"24:00","end":"24:00"}]})", "start must be a time"},
      {R"({"schedule":[{"days":["mon"],"start":"01:00","end":"24:01"}]})", "end must be a time"},
      {R"({"schedule":[{"days":["mon"],"start":"03:00","end":"02:00"}]})", "end must be after start"},
      {R"({"schedule":[{"days":["mon","tue"],"start":"01:00","end":"05:00"},
                       {"days":["tue"],"start":"04:00","end":"06:00"}]})",
       "interval 2: overlaps interval 1 on tue"},
      {R"({"schedule":[{"days":["mon"],"start":"01:00","end":"02:00","colour":"red"}]})", "unknown field 'colour'"},
  };
  for (const auto& c : cases) {
    auto s = BandwidthSchedule::fromJson(json::parse(c.in));
    ASSERT_FALSE(s) << c.in;
    EXPECT_EQ(s.status().code(), Code::kInvalidArgument) << c.in;
    EXPECT_NE(s.status().message().find(c.says), std::string::npos) << c.in << " → " << s.status().message();
  }
  // Touching intervals do not overlap.
  EXPECT_TRUE(BandwidthSchedule::fromJson(json::parse(R"({"schedule":[
      {"days":["mon"],"start":"01:00","end":"02:00"},{"days":["mon"],"start":"02:00","end":"03:00"}]})")));
}

}  // namespace
}  // namespace ferry
