// The web console in a real browser: tests/console/console_flow.mjs drives Debian's
// Chromium (playwright-core) against the real ferry-control and ferry-agent started
// here; then this side checks that what the customer did in the browser is real: the
// API token made there works, the volume is an NBD export that reads back what is
// written, the snapshot is completed. Screenshots: BUILD/tests/console-screenshots/.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "iscsi_fixture.h"
#include "test_util.h"

#ifndef FERRY_SOURCE_DIR
#error "FERRY_SOURCE_DIR is set by tests/control.cmake"
#endif

namespace {

using json = nlohmann::json;
using ferry::testing::Agent;
using ferry::testing::NbdClient;

using ConsoleTest = ferry::testing::IscsiFixture;  // the agent serves iSCSI too

TEST_F(ConsoleTest, ACustomerActivatesAndManagesAGatewayInTheBrowser) {
  const std::string tests = std::string(FERRY_SOURCE_DIR) + "/tests/console";
  if (!std::filesystem::exists("/usr/bin/chromium")) GTEST_SKIP() << "no /usr/bin/chromium (scripts/deps.sh)";
  if (!ferry::testing::haveProgram("node")) GTEST_SKIP() << "no node (scripts/deps.sh)";
  if (!std::filesystem::exists(tests + "/node_modules/playwright-core")) {
    GTEST_SKIP() << "playwright-core is not installed in tests/console (scripts/deps.sh runs npm ci)";
  }
  Agent agent(agentDir_.path(), *control_, "metrics.interval_seconds = 1\n" + agentConfig());
  ASSERT_TRUE(agent.start()) << agent.log();
  ASSERT_TRUE(agent.waitFor([](const json& s) { return s.value("stage", "") == "waiting_for_customer"; }))
      << agent.log();

  std::string shots = ferry::testing::buildDir() + "/tests/console-screenshots";
  std::string log = agentDir_ / "browser.log";
  std::string cmd = "cd '" + tests + "' && CONSOLE=https://localhost:" + std::to_string(control_->port()) +
                    " AGENT_PAGE=http://127.0.0.1:" + std::to_string(agent.pagePort()) + " SHOTS='" + shots +
                    "' timeout 300 node console_flow.mjs > '" + log + "' 2>&1";
  int rc = std::system(cmd.c_str());
  std::string out = ferry::testing::readFile(log);
  ASSERT_EQ(rc, 0) << out << "\n--- agent ---\n" << agent.log() << "\n--- control ---\n" << control_->log();

  json result;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("RESULT ", 0) == 0) result = json::parse(line.substr(7), nullptr, false);
  }
  ASSERT_TRUE(result.is_object()) << out;
  std::string gw = result.value("gateway", ""), token = result.value("token", "");

  // The token made in the browser is a working API token of that account.
  auto g = control_->call("GET", "/v1/gateways/" + gw, "", token);
  ASSERT_EQ(g.status, 200) << g.text;
  EXPECT_EQ(g.body["gateway"]["name"], "branch");
  EXPECT_EQ(g.body["gateway"]["timezone"], "Europe/Berlin");
  EXPECT_EQ(control_->call("GET", "/v1/gateways/" + gw + "/volumes/disk0", "", token).body["volume"]["state"],
            "available");
  // The volume made in the browser from the first snapshot.
  json restored = control_->call("GET", "/v1/gateways/" + gw + "/volumes/restored", "", token).body["volume"];
  EXPECT_EQ(restored["state"], "available") << restored;
  EXPECT_TRUE(restored["source"].is_object() && restored["source"].contains("snapshot")) << restored;
  // The one taken by hand and kept (the schedule set in the browser takes more: an
  // "hour" is a second in these tests).
  json snaps = json::array();
  json all = control_->call("GET", "/v1/gateways/" + gw + "/snapshots", "", token).body;
  for (const auto& s : all["snapshots"]) {
    if (s["scheduled"] == false) snaps.push_back(s);
  }
  ASSERT_EQ(snaps.size(), 1u) << snaps;
  EXPECT_EQ(snaps[0]["state"], "completed");
  auto schedule = control_->call("GET", "/v1/gateways/" + gw + "/volumes/disk0/schedule", "", token);
  EXPECT_EQ(schedule.body["schedule"]["every_hours"], 6) << schedule.text;
  EXPECT_EQ(schedule.body["schedule"]["keep"], 4) << schedule.text;
  EXPECT_EQ(control_->call("GET", "/v1/gateways/" + gw + "/bandwidth", "", token).body["bandwidth"]["upload_rate"],
            10 << 20);
  // The fixture's own account does not see it.
  EXPECT_EQ(api("GET", "/v1/gateways/" + gw).status, 404);

  // The volume made in the browser is an NBD export of the gateway.
  NbdClient nbd;
  ASSERT_TRUE(nbd.connectTcp("127.0.0.1", agent.nbdPort(), "disk0")) << nbd.error();
  EXPECT_EQ(nbd.size(), 64 << 20);
  auto data = ferry::testing::randomBytes(1 << 20, 11);
  ASSERT_TRUE(nbd.pwrite(data.data(), data.size(), 3 << 20)) << nbd.error();
  ASSERT_TRUE(nbd.flush()) << nbd.error();
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(nbd.pread(back.data(), back.size(), 3 << 20)) << nbd.error();
  EXPECT_EQ(back, data);

  for (const char* name : {"01-login", "02-activate", "03-wrong-key", "04-gateway", "05-gateway-narrow",
                           "06-gateways", "07-tokens", "08-other-account"}) {
    EXPECT_TRUE(std::filesystem::exists(shots + "/" + name + ".png")) << name;
  }
}

// The console's files: served with a strict content policy, index for /console/, a
// redirect for /console, a 404 for what is not there, and read-only.
TEST_F(ConsoleTest, TheConsoleIsServedWithAStrictPolicy) {
  auto index = control_->call("GET", "/console/", "");
  ASSERT_EQ(index.status, 200);
  EXPECT_NE(index.headers["Content-Security-Policy"].find("script-src 'self'"), std::string::npos);
  EXPECT_NE(index.headers["Content-Security-Policy"].find("frame-ancestors 'none'"), std::string::npos);
  EXPECT_EQ(index.headers["X-Content-Type-Options"], "nosniff");
  EXPECT_EQ(index.headers["Content-Type"], "text/html; charset=utf-8");
  EXPECT_NE(index.text.find("<script type=\"module\" src=\"app.js\">"), std::string::npos) << index.text;
  auto app = control_->call("GET", "/console/views/gateway.js", "");
  EXPECT_EQ(app.status, 200);
  EXPECT_NE(app.text.find("export async function gatewayView"), std::string::npos);
  EXPECT_EQ(control_->call("GET", "/console/nothing.js", "").status, 404);
  EXPECT_EQ(control_->call("GET", "/console/../api.js", "").status, 404);
  EXPECT_EQ(control_->call("POST", "/console/index.html", "{}").status, 405);
  auto bare = control_->call("GET", "/console?activationKey=K", "");
  EXPECT_EQ(bare.status, 301);
  EXPECT_EQ(bare.headers["Location"], "/console/?activationKey=K");
}

}  // namespace
