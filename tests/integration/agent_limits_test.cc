// Bandwidth limits and metrics, end to end: set through the API, applied by the agent
// to the engine in the gateway's time zone and kept across restarts; metrics reported
// up the channel and served by the API. And the agent's keeper of limits on its own.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent_fixture.h"
#include "bandwidth_keeper.h"
#include "engine_client.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using ferry::testing::Agent;
using ferry::testing::NbdClient;
using ferry::testing::TempDir;

using AgentLimitsTest = ferry::testing::AgentFixture;

// Local "HH:MM" of a minute of the day.
std::string hhmm(int minute) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d", minute / 60, minute % 60);
  return buf;
}

// Every day, the two hours around now in a zone UTC+5:30: never in force if the agent
// read the schedule in UTC (5.5 hours off).
json twoHoursAroundNowInKolkata() {
  int64_t local = static_cast<int64_t>(::time(nullptr)) + 19800;
  int m = static_cast<int>((local % 86400) / 60);
  json days = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
  json rates = {{"upload_rate", "1M"}, {"download_rate", "512K"}};
  json intervals = json::array();
  auto add = [&](int from, int to) {
    json iv = rates;
    iv["days"] = days;
    iv["start"] = hhmm(from);
    iv["end"] = to == 1440 ? "24:00" : hhmm(to);
    intervals.push_back(iv);
  };
  add(std::max(0, m - 60), std::min(1440, m + 60));
  if (m + 60 > 1440) add(0, m + 60 - 1440);
  if (m - 60 < 0) add(1440 + m - 60, 1440);
  return {{"upload_rate", "128K"}, {"download_rate", 0}, {"schedule", intervals}};
}

TEST_F(AgentLimitsTest, BandwidthLimitsReachTheEngineInTheGatewaysTimeZoneAndOutliveARestart) {
  Agent agent(agentDir_.path(), *control_, "bandwidth.check_seconds = 1\n");
  std::string gw = activate(agent, "Asia/Kolkata");
  ASSERT_EQ(waitFinished(createVolume(gw, "disk0"))["state"], "done") << agent.log();

  auto set = api("PUT", "/v1/gateways/" + gw + "/bandwidth", twoHoursAroundNowInKolkata());
  ASSERT_EQ(set.status, 202) << set.text;
  EXPECT_EQ(set.body["request"]["args"]["timezone"], "Asia/Kolkata");
  EXPECT_EQ(set.body["bandwidth"]["in_force"]["upload_rate"], 1 << 20) << "the provider reads it in the zone too";
  json done = waitFinished(set.body["request"]["id"]);
  ASSERT_EQ(done["state"], "done") << done << agent.log();
  EXPECT_EQ(done["result"]["in_force"], (json{{"upload_rate", 1 << 20}, {"download_rate", 512 << 10}})) << done;
  json engine = agent.status()["engine"];
  EXPECT_EQ(engine["upload_limit"], 1 << 20) << engine;
  EXPECT_EQ(engine["download_limit"], 512 << 10) << engine;

  // The limit holds uploads back: 4 chunks at 1 MiB/s wait their turn.
  {
    NbdClient nbd;
    ASSERT_TRUE(nbd.connectTcp("127.0.0.1", agent.nbdPort(), "disk0")) << nbd.error();
    auto data = ferry::testing::randomBytes(4 << 20, 3);
    ASSERT_TRUE(nbd.pwrite(data.data(), data.size(), 0)) << nbd.error();
    ASSERT_TRUE(nbd.flush()) << nbd.error();
  }
  ASSERT_TRUE(
      agent.waitFor([](const json& s) { return s.contains("engine") && s["engine"].value("dirty_bytes", 1) == 0; }, 60))
      << agent.log();
  EXPECT_GT(agent.status()["engine"].value("upload_throttled_seconds", 0.0), 0.5) << agent.status()["engine"];

  // Kept across a restart: the new engine gets the limits again.
  agent.stop();
  ASSERT_TRUE(agent.start()) << agent.log();
  EXPECT_TRUE(agent.waitFor([](const json& s) {
    return s.contains("engine") && s["engine"].value("upload_limit", 0) == (1 << 20);
  })) << agent.log();
  EXPECT_EQ(agent.status()["bandwidth"]["revision"], 1);

  // No limits again.
  auto clear = api("PUT", "/v1/gateways/" + gw + "/bandwidth", json::object());
  ASSERT_EQ(clear.status, 202) << clear.text;
  ASSERT_EQ(waitFinished(clear.body["request"]["id"])["state"], "done");
  EXPECT_EQ(agent.status()["engine"]["upload_limit"], 0);
}

TEST_F(AgentLimitsTest, TheGatewayReportsItsMetricsAndTheApiServesThem) {
  Agent agent(agentDir_.path(), *control_, "metrics.interval_seconds = 1\n");
  std::string gw = activate(agent);
  ASSERT_EQ(waitFinished(createVolume(gw, "disk0"))["state"], "done") << agent.log();
  NbdClient nbd;
  ASSERT_TRUE(nbd.connectTcp("127.0.0.1", agent.nbdPort(), "disk0")) << nbd.error();
  auto data = ferry::testing::randomBytes(2 << 20, 5);
  ASSERT_TRUE(nbd.pwrite(data.data(), data.size(), 0)) << nbd.error();
  ASSERT_TRUE(nbd.flush()) << nbd.error();
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(nbd.pread(back.data(), back.size(), 0)) << nbd.error();

  // Within a minute the uploaded bytes show in the volume's samples.
  int64_t up = 0;
  json samples;
  for (int i = 0; i < 300 && up < (2 << 20); ++i) {
    samples = api("GET", "/v1/gateways/" + gw + "/metrics?volume=disk0").body;
    up = 0;
    for (const auto& s : samples["samples"]) up += s.value("bytes_up", int64_t{0});
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_GE(up, 2 << 20) << samples;
  bool sawHits = false;
  for (const auto& s : samples["samples"]) sawHits = sawHits || (s["cache_hit_ratio"].is_number());
  EXPECT_TRUE(sawHits) << "the read back was counted: " << samples;
  json totals = api("GET", "/v1/gateways/" + gw + "/metrics").body;
  ASSERT_FALSE(totals["samples"].empty()) << totals;
  EXPECT_TRUE(totals["samples"][0].contains("upload_buffer_used")) << totals;
  EXPECT_GT(totals["samples"][0].value("interval_seconds", 0), 0);
}

// The keeper alone (no engine: kept, applied later): a late redelivery of an older
// revision changes nothing; bad settings are refused; the setting survives a restart.
TEST(BandwidthKeeperTest, KeepsTheNewestRevisionAndRefusesBadSettings) {
  TempDir dir;
  ferry::agent::EngineClient engine(dir / "no-engine.sock");
  json newer = {{"revision", 2}, {"timezone", "Europe/Berlin"}, {"limits", {{"upload_rate", 65536}}}};
  json older = {{"revision", 1}, {"timezone", "UTC"}, {"limits", {{"upload_rate", 0}}}};
  {
    ferry::agent::BandwidthKeeper keeper(dir.path(), engine, 1);
    ASSERT_TRUE(keeper.load());
    auto kept = keeper.set(newer);
    ASSERT_TRUE(kept) << kept.status().toString();
    EXPECT_EQ(kept.value()["applied"], false) << "no engine yet";
    auto late = keeper.set(older);
    ASSERT_TRUE(late);
    EXPECT_EQ(late.value()["superseded"], true);
    EXPECT_EQ(keeper.status()["upload_rate"], 65536);
    EXPECT_FALSE(keeper.set({{"revision", 3}, {"timezone", "Mars/Olympus"}, {"limits", json::object()}}));
    EXPECT_FALSE(keeper.set({{"revision", 3}, {"timezone", "UTC"}, {"limits", {{"upload_rate", 5}}}}));
    EXPECT_FALSE(keeper.set({{"timezone", "UTC"}}));
    EXPECT_EQ(keeper.status()["revision"], 2);
  }
  ferry::agent::BandwidthKeeper again(dir.path(), engine, 1);
  ASSERT_TRUE(again.load());
  EXPECT_EQ(again.status()["revision"], 2);
  EXPECT_EQ(again.status()["timezone"], "Europe/Berlin");
  EXPECT_EQ(again.status()["upload_rate"], 65536);
  // A damaged file is an error at start, not silently no limits.
  std::ofstream(dir / "bandwidth.json") << "{not json";
  ferry::agent::BandwidthKeeper damaged(dir.path(), engine, 1);
  EXPECT_FALSE(damaged.load());
}

}  // namespace
