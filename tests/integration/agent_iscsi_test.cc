// iSCSI end to end (issue 8): a real ferry-control and ferry-agent, the agent running
// tgtd and nbdfuse; initiators are libiscsi's tools and qemu-io (userspace: there is no
// kernel initiator here). Every volume is a target with the data of its NBD export; its
// CHAP credentials come from the provider; the initiators logged in are listed.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "iscsi_fixture.h"

namespace {

using ferry::testing::Agent;
using ferry::testing::NbdClient;
using json = nlohmann::json;

using AgentIscsiTest = ferry::testing::IscsiFixture;

TEST_F(AgentIscsiTest, AVolumeIsATargetWithTheDataOfItsNbdExportBothWays) {
  Agent agent(agentDir_.path(), *control_, agentConfig());
  std::string gw = activate(agent);
  json made = waitFinished(createVolume(gw, "disk0", "64M"));
  ASSERT_EQ(made["state"], "done") << made << agent.log();
  EXPECT_EQ(made["result"].value("iscsi", json::object()).value("state", ""), "ready") << made;
  EXPECT_EQ(made["result"].value("iscsi", json::object()).value("target", ""), iqn("disk0")) << made;

  std::string out;
  ASSERT_EQ(run("iscsi-inq " + url("disk0"), &out), 0) << out << agent.log();
  EXPECT_NE(out.find("Vendor:FERRY"), std::string::npos) << out;
  EXPECT_NE(out.find("Product:disk0"), std::string::npos) << out;
  ASSERT_EQ(run("iscsi-readcapacity16 " + url("disk0"), &out), 0) << out;
  EXPECT_NE(out.find("Total size:" + std::to_string(64 << 20)), std::string::npos) << out;

  // iSCSI → NBD: a pattern written (and flushed) over iSCSI reads back over NBD.
  ASSERT_EQ(qemuIo("disk0", {"write -P 0xa5 1M 3M", "flush"}, &out), 0) << out;
  auto client = std::make_unique<NbdClient>();
  NbdClient& nbd = *client;
  ASSERT_TRUE(nbd.connectTcp("127.0.0.1", agent.nbdPort(), "disk0")) << nbd.error();
  std::vector<uint8_t> back(3 << 20);
  ASSERT_TRUE(nbd.pread(back.data(), back.size(), 1 << 20)) << nbd.error();
  EXPECT_EQ(std::count(back.begin(), back.end(), 0xa5), static_cast<long>(back.size()));

  // NBD → iSCSI: random data written over NBD; the whole volume read over iSCSI is
  // the NBD export's, byte for byte.
  auto data = ferry::testing::randomBytes(5 << 20, 11);
  ASSERT_TRUE(nbd.pwrite(data.data(), data.size(), 20 << 20)) << nbd.error();
  ASSERT_TRUE(nbd.flush()) << nbd.error();
  std::string image = agentDir_ / "over-iscsi.raw";
  ASSERT_EQ(run("qemu-img convert -O raw --image-opts driver=iscsi,transport=tcp,portal=127.0.0.1:" +
                    std::to_string(portalPort_) + ",target=" + iqn("disk0") + ",lun=1 " + image,
                &out),
            0)
      << out;
  std::string viaIscsi = ferry::testing::readFile(image);
  ASSERT_EQ(viaIscsi.size(), size_t{64} << 20);
  std::vector<uint8_t> whole(64 << 20);
  ASSERT_TRUE(nbd.pread(whole.data(), whole.size(), 0)) << nbd.error();
  EXPECT_TRUE(std::equal(whole.begin(), whole.end(), reinterpret_cast<const uint8_t*>(viaIscsi.data())));
  EXPECT_TRUE(std::equal(data.begin(), data.end(), whole.begin() + (20 << 20)));

  // No cache between the protocols: a region read over iSCSI, then rewritten over
  // NBD, reads back the new bytes over iSCSI.
  ASSERT_EQ(qemuIo("disk0", {"read -P 0xa5 1M 64k"}, &out), 0) << out;
  std::vector<uint8_t> fresh(64 << 10, 0x3c);
  ASSERT_TRUE(nbd.pwrite(fresh.data(), fresh.size(), 1 << 20)) << nbd.error();
  ASSERT_EQ(qemuIo("disk0", {"read -P 0x3c 1M 64k"}, &out), 0) << out;
  EXPECT_EQ(out.find("failed"), std::string::npos) << "iSCSI read stale data: " << out;
  ASSERT_TRUE(nbd.pwrite(std::vector<uint8_t>(64 << 10, 0xa5).data(), 64 << 10, 1 << 20)) << nbd.error();

  // The initiators logged in are listed with the volume (the agent reports changes).
  std::thread holder([&] { qemuIo("disk0", {"sleep 6000"}, nullptr, "iqn.2026-11.test:holder"); });
  bool listed = false;
  for (int i = 0; i < 50 && !listed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (const auto& ini : iscsiOf(gw, "disk0").value("initiators", json::array())) {
      listed = listed || (ini.value("name", "") == "iqn.2026-11.test:holder" && ini.value("address", "") == "127.0.0.1");
    }
  }
  holder.join();
  EXPECT_TRUE(listed) << iscsiOf(gw, "disk0") << agent.log();
  json volume = api("GET", "/v1/gateways/" + gw + "/volumes/disk0").body["volume"];
  EXPECT_EQ(volume["iscsi"]["target"], iqn("disk0")) << volume;
  EXPECT_EQ(volume["iscsi"]["state"], "ready") << volume;

  // A tgtd that dies is started again and the target made again.
  int tgtd = std::atoi(ferry::testing::readFile(agent.stateDir() + "/iscsi/tgtd.pid").c_str());
  ASSERT_GT(tgtd, 0);
  ASSERT_EQ(::kill(tgtd, SIGKILL), 0);
  ASSERT_TRUE(waitTarget("disk0", false, 5));
  ASSERT_TRUE(waitTarget("disk0", true)) << agent.log();
  ASSERT_EQ(qemuIo("disk0", {"read -P 0xa5 1M 3M"}, &out), 0) << out;
  EXPECT_EQ(out.find("Pattern verification failed"), std::string::npos) << out;

  // An engine that dies (nbdkit killed; the supervisor starts it again) takes
  // nbdfuse's NBD connection along: the target is made again on a new one, and what
  // was flushed before reads back.
  client.reset();
  ASSERT_EQ(run("pkill -KILL -f '[n]bdkit .*state=" + agent.stateDir() + "/engine'"), 0);
  bool served = false;
  for (int i = 0; i < 150 && !served; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    served = qemuIo("disk0", {"read -P 0xa5 1M 3M"}, &out) == 0 && out.find("failed") == std::string::npos;
  }
  EXPECT_TRUE(served) << out << agent.log();
  ASSERT_EQ(qemuIo("disk0", {"write -P 0x77 8M 1M", "flush"}, &out), 0) << out;
  EXPECT_EQ(out.find("failed"), std::string::npos) << out;
  client = std::make_unique<NbdClient>();
  ASSERT_TRUE(client->connectTcp("127.0.0.1", agent.nbdPort(), "disk0")) << client->error();
  std::vector<uint8_t> after(1 << 20);
  ASSERT_TRUE(client->pread(after.data(), after.size(), 8 << 20)) << client->error();
  EXPECT_EQ(std::count(after.begin(), after.end(), 0x77), static_cast<long>(after.size())) << "written after the restart";
  client.reset();
  std::string log = agent.log();
  EXPECT_TRUE(log.find("the engine restarted; serving every volume again") != std::string::npos ||
              log.find("nbdfuse of disk0 exited; serving it again") != std::string::npos)
      << log;

  // Deleting the volume takes its target away first (the engine refuses a volume with
  // open connections), then the volume.
  auto del = api("DELETE", "/v1/gateways/" + gw + "/volumes/disk0");
  ASSERT_EQ(del.status, 202) << del.text;
  json gone = waitFinished(del.body["request"]["id"]);
  EXPECT_EQ(gone["state"], "done") << gone << agent.log();
  EXPECT_TRUE(waitTarget("disk0", false, 5));
  agent.stop();
  // The agent stopped: no tgtd or nbdfuse of its own is left.
  // ([t]: the pattern does not match the shell that runs pgrep.)
  EXPECT_NE(run("pgrep -f '[t]gtd -f -C " + std::to_string(controlPort_) + " '"), 0);
  EXPECT_NE(run("pgrep -f '[n]bdfuse " + agent.stateDir() + "'"), 0);
}

TEST_F(AgentIscsiTest, ChapSetThroughTheProviderGuardsTheTarget) {
  Agent agent(agentDir_.path(), *control_, agentConfig());
  std::string gw = activate(agent);
  ASSERT_EQ(waitFinished(createVolume(gw, "vol1", "16M"))["state"], "done") << agent.log();
  ASSERT_TRUE(waitTarget("vol1", true)) << agent.log();
  std::string chapPath = "/v1/gateways/" + gw + "/volumes/vol1/chap";

  // Bad settings are refused before anything reaches the gateway (one user name both
  // ways would be one tgtd account, bound one way only).
  EXPECT_EQ(api("PUT", chapPath,
                {{"initiator_user", "host1"},
                 {"initiator_secret", "twelve-chars"},
                 {"target_user", "host1"},
                 {"target_secret", "other-secret"}})
                .status,
            400);
  EXPECT_EQ(api("PUT", chapPath, {{"initiator_user", "host1"}, {"initiator_secret", "short"}}).status, 400);
  EXPECT_EQ(api("PUT", chapPath, {{"initiator_user", "host1"}, {"initiator_secret", "twelve-chars"}, {"x", 1}}).status,
            400);
  EXPECT_EQ(api("PUT", chapPath,
                {{"initiator_user", "host1"}, {"initiator_secret", "twelve-chars"}, {"target_user", "gw"}})
                .status,
            400);
  EXPECT_EQ(api("PUT", "/v1/gateways/" + gw + "/volumes/nope/chap",
                {{"initiator_user", "host1"}, {"initiator_secret", "twelve-chars"}})
                .status,
            404);
  // Another customer cannot see or set it.
  std::string other = ferry::testing::signUpAndLogIn(*control_, "bob@example.com");
  EXPECT_EQ(control_->call("PUT", chapPath, R"({"initiator_user":"x","initiator_secret":"twelve-chars"})", other).status,
            404);
  EXPECT_EQ(control_->call("GET", "/v1/gateways/" + gw + "/volumes/vol1/iscsi", "", other).status, 404);

  // One-way CHAP: without the secret, or with a wrong one, no login.
  auto set = api("PUT", chapPath, {{"initiator_user", "host1"}, {"initiator_secret", "s3cret-s3cret"}});
  ASSERT_EQ(set.status, 202) << set.text;
  json done = waitFinished(set.body["request"]["id"]);
  ASSERT_EQ(done["state"], "done") << done << agent.log();
  EXPECT_EQ(done["args"]["initiator_secret"], "(set)") << "the request history does not show secrets";
  EXPECT_EQ(api("GET", "/v1/requests/" + set.body["request"]["id"].get<std::string>()).text.find("s3cret-s3cret"),
            std::string::npos);
  std::string out;
  EXPECT_NE(run("iscsi-inq " + url("vol1"), &out), 0) << out;
  EXPECT_NE(run("iscsi-inq " + url("vol1", "host1", "wrong-secret-1"), &out), 0) << out;
  EXPECT_EQ(run("iscsi-inq " + url("vol1", "host1", "s3cret-s3cret"), &out), 0) << out << agent.log();
  json shown = iscsiOf(gw, "vol1");
  EXPECT_EQ(shown["chap"]["enabled"], true) << shown;
  EXPECT_EQ(shown["chap"]["initiator_user"], "host1") << shown;
  EXPECT_EQ(shown.dump().find("s3cret"), std::string::npos) << shown;

  // Mutual CHAP: the initiator checks the target too; a wrong target secret fails.
  set = api("PUT", chapPath,
            {{"initiator_user", "host1"},
             {"initiator_secret", "s3cret-s3cret"},
             {"target_user", "gateway1"},
             {"target_secret", "other-s3cret!"}});
  ASSERT_EQ(set.status, 202) << set.text;
  ASSERT_EQ(waitFinished(set.body["request"]["id"])["state"], "done") << agent.log();
  EXPECT_EQ(run("iscsi-inq '" + url("vol1", "host1", "s3cret-s3cret", "gateway1", "other-s3cret!") + "'", &out), 0)
      << out << agent.log();
  EXPECT_NE(run("iscsi-inq '" + url("vol1", "host1", "s3cret-s3cret", "gateway1", "not-the-one!!") + "'", &out), 0)
      << out;
  EXPECT_EQ(iscsiOf(gw, "vol1")["chap"]["mutual"], true);

  // Kept across an agent killed outright (its tgtd and nbdfuse go with it; the next
  // agent makes tgtd's accounts again from its own copy).
  agent.kill9();
  ASSERT_TRUE(agent.start()) << agent.log();
  ASSERT_TRUE(waitTarget("vol1", false, 1));  // no login without CHAP
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    back = run("iscsi-inq " + url("vol1", "host1", "s3cret-s3cret")) == 0;
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(back) << agent.log();
  EXPECT_NE(run("iscsi-inq " + url("vol1"), &out), 0) << "made again with its CHAP, never open without: " << out;

  // Off again: anyone on the network may log in.
  auto off = api("DELETE", chapPath);
  ASSERT_EQ(off.status, 202) << off.text;
  ASSERT_EQ(waitFinished(off.body["request"]["id"])["state"], "done") << agent.log();
  EXPECT_EQ(run("iscsi-inq " + url("vol1"), &out), 0) << out;
  EXPECT_EQ(iscsiOf(gw, "vol1")["chap"]["enabled"], false);

  // A CHAP file the agent cannot read: no target is served (not even without its
  // CHAP), NBD goes on, the reason is shown, and new CHAP settings are refused.
  agent.stop();
  std::ofstream(agent.stateDir() + "/iscsi/chap.json", std::ios::trunc) << "{ not json";
  ASSERT_TRUE(agent.start()) << agent.log();
  ASSERT_TRUE(agent.waitFor([](const json& st) {
    return st.value("iscsi", json::object()).value("error", "").find("chap.json") != std::string::npos;
  })) << agent.status();
  EXPECT_NE(run("iscsi-inq " + url("vol1"), &out), 0) << out;
  bool nbdServes = false;
  for (int i = 0; i < 150 && !nbdServes; ++i) {
    NbdClient nbd;
    nbdServes = nbd.connectTcp("127.0.0.1", agent.nbdPort(), "vol1");
    if (!nbdServes) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(nbdServes) << agent.log();
  EXPECT_NE(run("iscsi-inq " + url("vol1"), &out), 0) << "still no target once the engine is up: " << out;
  auto refused = api("PUT", chapPath, {{"initiator_user", "host2"}, {"initiator_secret", "s3cret-s3cret"}});
  ASSERT_EQ(refused.status, 202);
  json failed = waitFinished(refused.body["request"]["id"]);
  EXPECT_EQ(failed["state"], "failed") << failed;
  EXPECT_NE(failed.dump().find("chap.json"), std::string::npos) << failed;
  // The provider says the setting it holds was not applied.
  json shownAfter = iscsiOf(gw, "vol1");
  EXPECT_EQ(shownAfter["chap_request_state"], "failed") << shownAfter;
  EXPECT_NE(shownAfter.value("chap_request_error", "").find("chap.json"), std::string::npos) << shownAfter;
}

}  // namespace
