// ferryctl as a customer types it, against a real ferry-control over TLS.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "activate.h"
#include "control_process.h"
#include "gateway_channel.h"
#include "gateway_key.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using ferry::testing::buildDir;
using ferry::testing::Control;
using ferry::testing::TempDir;

class FerryctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    control_ = std::make_unique<Control>(dir_.path(), "sqlite://" + (dir_ / "control.db"));
    ASSERT_TRUE(control_->start()) << control_->log();
    endpoint_ = "https://localhost:" + std::to_string(control_->port());
  }
  // Runs ferryctl with args (and stdin); returns its exit status, output in out.
  int ctl(const std::string& args, std::string* out = nullptr, const std::string& input = "") {
    std::string cmd = "FERRY_CONFIG_DIR='" + (dir_ / "cfg") + "' " + buildDir() + "/server/ferryctl " + args;
    if (!input.empty()) cmd = "printf '%s\\n' '" + input + "' | " + cmd;
    std::string o;
    int rc = ferry::testing::runCommand(cmd + " 2>&1", &o);
    if (out) *out = o;
    return rc;
  }
  void loggedIn(const std::string& email) {
    std::string out;
    std::string where = "--endpoint " + endpoint_ + " --ca " + control_->caPath();
    ASSERT_EQ(ctl(where + " signup " + email + " --password-stdin", &out, "0123456789ab"), 0) << out;
    ASSERT_EQ(ctl(where + " login " + email + " --password-stdin", &out, "0123456789ab"), 0) << out;
    EXPECT_NE(out.find("logged in"), std::string::npos) << out;
  }

  TempDir dir_;
  std::unique_ptr<Control> control_;
  std::string endpoint_;
};

TEST_F(FerryctlTest, AccountAndTokens) {
  loggedIn("ann@example.com");
  std::string out;
  ASSERT_EQ(ctl("whoami", &out), 0) << out;
  EXPECT_NE(out.find("ann@example.com"), std::string::npos) << out;
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "cfg/config.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the config holds a token";

  ASSERT_EQ(ctl("token create ci-runner", &out), 0) << out;
  EXPECT_EQ(out.rfind("fy_", 0), 0u) << out;
  ASSERT_EQ(ctl("--output json token list", &out), 0) << out;
  json list = json::parse(out);
  std::string ciId;
  for (const auto& t : list["tokens"]) {
    if (t["name"] == "ci-runner") ciId = t["id"];
  }
  ASSERT_FALSE(ciId.empty()) << out;
  ASSERT_EQ(ctl("token revoke " + ciId, &out), 0) << out;
  ASSERT_EQ(ctl("token list", &out), 0);
  EXPECT_EQ(out.find("ci-runner"), std::string::npos) << out;

  ASSERT_EQ(ctl("logout", &out), 0) << out;
  EXPECT_EQ(ctl("whoami", &out), 1);
  EXPECT_NE(out.find("not logged in"), std::string::npos) << out;
}

TEST_F(FerryctlTest, ActivateAndManageAGateway) {
  loggedIn("ann@example.com");
  ferry::testing::GatewayKey key;
  auto started = control_->call("POST", "/v1/activation",
                                json{{"public_key", key.publicPem()}, {"software_version", "0.1.0"}}.dump());
  ASSERT_EQ(started.status, 201);
  std::string activationKey = started.body["activation_key"];

  std::string out;
  EXPECT_EQ(ctl("gateway activate ABCD-EFGH-JKMN-PQ23 --name wrong", &out), 1);
  EXPECT_NE(out.find("no such activation key"), std::string::npos) << out;
  // Typed in lower case with spaces, as people do.
  std::string typed = activationKey;
  for (char& c : typed) c = static_cast<char>(c == '-' ? ' ' : std::tolower(c));
  ASSERT_EQ(ctl("gateway activate '" + typed + "' --name 'branch office' --timezone Europe/Berlin", &out), 0) << out;
  ASSERT_EQ(ctl("--output json gateway list", &out), 0) << out;
  json list = json::parse(out);
  ASSERT_EQ(list["gateways"].size(), 1u);
  std::string id = list["gateways"][0]["id"];
  ASSERT_EQ(ctl("gateway list", &out), 0);
  EXPECT_NE(out.find("branch office"), std::string::npos) << out;
  EXPECT_NE(out.find("offline"), std::string::npos) << out;
  ASSERT_EQ(ctl("gateway rename " + id + " 'head office'", &out), 0) << out;
  ASSERT_EQ(ctl("gateway show " + id, &out), 0) << out;
  EXPECT_NE(out.find("head office"), std::string::npos) << out;
  EXPECT_NE(out.find("Europe/Berlin"), std::string::npos) << out;
  ASSERT_EQ(ctl("gateway delete " + id, &out), 0) << out;
  EXPECT_EQ(ctl("gateway show " + id, &out), 1);
  EXPECT_NE(out.find("no gateway"), std::string::npos) << out;
}

TEST_F(FerryctlTest, VolumesSnapshotsAndRequestsOfAConnectedGateway) {
  loggedIn("ann@example.com");
  // The gateway side: activated through the real flow, holding its channel, doing what
  // it is asked (refusing volumes named "fail…").
  auto session = control_->call("POST", "/v1/login", R"({"email":"ann@example.com","password":"0123456789ab"})");
  ferry::testing::GatewayKey key;
  auto who = ferry::testing::activateGateway(*control_, session.body["token"], key);
  std::mutex seenMu;
  json lastCreate;  // the args of the last volume.create the gateway got
  ferry::testing::GatewayChannel channel(who, {control_->channelPort()}, [&](const json& req) -> json {
    if (req["args"].value("name", "").find("fail") != std::string::npos) {
      return {{"ok", false}, {"error", {{"code", "no_space"}, {"message", "the cache disk is full"}}}};
    }
    json result = json::object();
    if (req.value("op", "") == "snapshot.create") result = {{"size", 1 << 30}, {"chunk_size", 1 << 20}};
    if (req.value("op", "") == "volume.create") {
      std::lock_guard lock(seenMu);
      lastCreate = req["args"];
      if (req["args"].contains("source")) result["source"] = {{"snapshot", "rp-000001a22c000000"}, {"created", 1764500000}};
    }
    return {{"ok", true}, {"result", result}};
  });
  channel.start();

  std::string out;
  ASSERT_EQ(ctl("volume create " + who.id + " disk0 --size 1G --wait", &out), 0) << out;
  EXPECT_NE(out.find("volume disk0 on " + who.id + ": done"), std::string::npos) << out;
  ASSERT_EQ(ctl("volume list " + who.id, &out), 0) << out;
  EXPECT_NE(out.find("disk0"), std::string::npos) << out;
  EXPECT_NE(out.find("1 GiB"), std::string::npos) << out;
  EXPECT_NE(out.find("available"), std::string::npos) << out;
  // As the issue writes it: no name, one is made.
  ASSERT_EQ(ctl("--output json volume create " + who.id + " --size 256M --chunk-size 4M --wait", &out), 0) << out;
  json made = json::parse(out);
  EXPECT_EQ(made["volume"]["name"].get<std::string>().rfind("vol-", 0), 0u) << out;
  EXPECT_EQ(made["volume"]["chunk_size"], 4 << 20);
  EXPECT_EQ(made["request"]["state"], "done");

  ASSERT_EQ(ctl("snapshot create " + who.id + " disk0 --wait", &out), 0) << out;
  ASSERT_EQ(ctl("--output json snapshot list " + who.id + " disk0", &out), 0) << out;
  json snaps = json::parse(out);
  ASSERT_EQ(snaps["snapshots"].size(), 1u) << out;
  EXPECT_EQ(snaps["snapshots"][0]["state"], "completed");
  std::string snapId = snaps["snapshots"][0]["id"];

  // Volumes made from the snapshot, and from disk0's newest recovery point.
  ASSERT_EQ(ctl("volume create " + who.id + " restored --from-snapshot " + snapId + " --wait", &out), 0) << out;
  {
    std::lock_guard lock(seenMu);
    EXPECT_EQ(lastCreate["source"]["volume"], "disk0") << lastCreate;
    EXPECT_EQ(lastCreate["source"]["snapshot"], snapId) << lastCreate;
    EXPECT_EQ(lastCreate["size"], 1 << 30) << "the snapshot's size";
  }
  ASSERT_EQ(ctl("volume show " + who.id + " restored", &out), 0) << out;
  EXPECT_NE(out.find("made from: snapshot " + snapId + " of disk0 on " + who.id), std::string::npos) << out;
  ASSERT_EQ(ctl("volume create " + who.id + " clone --from " + who.id + "/disk0 --wait", &out), 0) << out;
  {
    std::lock_guard lock(seenMu);
    EXPECT_EQ(lastCreate["source"]["snapshot"], "recovery-point") << lastCreate;
  }
  ASSERT_EQ(ctl("volume show " + who.id + " clone", &out), 0) << out;
  EXPECT_NE(out.find("made from: the newest recovery point of disk0"), std::string::npos) << out;
  EXPECT_NE(out.find("recovery point: rp-000001a22c000000"), std::string::npos) << out;
  EXPECT_EQ(ctl("volume create " + who.id + " x --from-snapshot snap-nope --wait", &out), 1) << out;
  EXPECT_NE(out.find("no snapshot snap-nope"), std::string::npos) << out;
  EXPECT_EQ(ctl("volume create " + who.id + " x --from disk0", &out), 2) << out;
  EXPECT_EQ(ctl("volume create " + who.id + " x --from-snapshot " + snapId + " --from " + who.id + "/disk0", &out), 2)
      << out;

  ASSERT_EQ(ctl("snapshot delete " + who.id + " " + snapId + " --wait", &out), 0) << out;

  // A snapshot schedule, shown, then off.
  ASSERT_EQ(ctl("snapshot schedule " + who.id + " disk0 --every 6h --keep 3", &out), 0) << out;
  EXPECT_NE(out.find("a snapshot every 6 h, keeping the last 3"), std::string::npos) << out;
  ASSERT_EQ(ctl("snapshot schedule " + who.id + " disk0", &out), 0) << out;
  EXPECT_NE(out.find("every 6 h"), std::string::npos) << out;
  EXPECT_EQ(ctl("snapshot schedule " + who.id + " disk0 --every 0 --keep 3", &out), 1) << out;
  EXPECT_EQ(ctl("snapshot schedule " + who.id + " disk0 --every often --keep 3", &out), 2) << out;
  ASSERT_EQ(ctl("snapshot schedule " + who.id + " disk0 --off", &out), 0) << out;
  EXPECT_EQ(ctl("snapshot schedule " + who.id + " disk0", &out), 1) << "none any more: " << out;

  // A refusal: exit 1 and the gateway's words.
  EXPECT_EQ(ctl("volume create " + who.id + " fail0 --size 1G --wait", &out), 1) << out;
  EXPECT_NE(out.find("failed: the cache disk is full"), std::string::npos) << out;
  ASSERT_EQ(ctl("request list " + who.id, &out), 0) << out;
  EXPECT_NE(out.find("volume.create"), std::string::npos) << out;
  EXPECT_NE(out.find("the cache disk is full"), std::string::npos) << out;
  ASSERT_EQ(ctl("--output json request list " + who.id + " --limit 1", &out), 0) << out;
  std::string last = json::parse(out)["requests"][0]["id"];
  ASSERT_EQ(ctl("request show " + last, &out), 0) << out;
  EXPECT_NE(out.find("failed"), std::string::npos) << out;

  // iSCSI CHAP: set (the secret read from stdin), shown without secrets, refused when
  // too short, mutual, then off.
  ASSERT_EQ(ctl("volume chap " + who.id + " disk0 --initiator-user host1 --initiator-secret - --wait", &out,
                "s3cret-s3cret"),
            0)
      << out;
  EXPECT_NE(out.find("CHAP for disk0: done"), std::string::npos) << out;
  ASSERT_EQ(ctl("volume show " + who.id + " disk0", &out), 0) << out;
  EXPECT_NE(out.find("chap:     one-way (initiator host1)"), std::string::npos) << out;
  EXPECT_EQ(out.find("s3cret"), std::string::npos) << out;
  ASSERT_EQ(ctl("request list " + who.id, &out), 0) << out;
  EXPECT_EQ(out.find("s3cret"), std::string::npos) << "request history hides secrets: " << out;
  EXPECT_EQ(ctl("volume chap " + who.id + " disk0 --initiator-user host1 --initiator-secret short --wait", &out), 1)
      << out;
  EXPECT_NE(out.find("12 to 16 characters"), std::string::npos) << out;
  EXPECT_EQ(ctl("volume chap " + who.id + " disk0 --initiator-secret s3cret-s3cret", &out), 2) << out;
  ASSERT_EQ(ctl("volume chap " + who.id +
                    " disk0 --initiator-user host1 --initiator-secret s3cret-s3cret --target-user gw1 "
                    "--target-secret other-s3cret --wait",
                &out),
            0)
      << out;
  ASSERT_EQ(ctl("volume show " + who.id + " disk0", &out), 0) << out;
  EXPECT_NE(out.find("chap:     mutual (initiator host1, target gw1)"), std::string::npos) << out;
  ASSERT_EQ(ctl("volume chap " + who.id + " disk0 --off --wait", &out), 0) << out;
  ASSERT_EQ(ctl("volume show " + who.id + " disk0", &out), 0) << out;
  EXPECT_NE(out.find("chap:     off"), std::string::npos) << out;

  ASSERT_EQ(ctl("volume delete " + who.id + " disk0 --wait", &out), 0) << out;
  ASSERT_EQ(ctl("request send " + who.id + " gateway.describe --wait", &out), 0) << out;

  // Bandwidth limits with a schedule, as a customer types them.
  ASSERT_EQ(ctl("bandwidth set " + who.id + " --upload 10M --schedule 'mon-fri 08:00-18:00 up=2M down=512K' "
                "--schedule 'sat,sun 00:00-24:00 up=0' --wait", &out), 0) << out;
  ASSERT_EQ(ctl("--output json bandwidth show " + who.id, &out), 0) << out;
  json bw = json::parse(out)["bandwidth"];
  EXPECT_EQ(bw["upload_rate"], 10 << 20);
  ASSERT_EQ(bw["schedule"].size(), 2u) << out;
  EXPECT_EQ(bw["schedule"][0]["days"], (json{"mon", "tue", "wed", "thu", "fri"}));
  EXPECT_EQ(bw["schedule"][0]["download_rate"], 512 << 10);
  EXPECT_EQ(bw["schedule"][1]["days"], (json{"sat", "sun"}));
  ASSERT_EQ(ctl("bandwidth show " + who.id, &out), 0) << out;
  EXPECT_NE(out.find("10 MiB/s"), std::string::npos) << out;
  EXPECT_NE(out.find("08:00-18:00"), std::string::npos) << out;
  EXPECT_EQ(ctl("bandwidth set " + who.id + " --schedule 'mon-fri 18:00-08:00'", &out), 1) << out;
  EXPECT_NE(out.find("end must be after start"), std::string::npos) << out;
  EXPECT_EQ(ctl("bandwidth set " + who.id + " --schedule 'someday 08:00-18:00'", &out), 2) << out;
  EXPECT_NE(out.find("not a day"), std::string::npos) << out;
  ASSERT_EQ(ctl("metrics " + who.id + " --since 2h", &out), 0) << out;
  EXPECT_NE(out.find("no metrics"), std::string::npos) << out;
  EXPECT_EQ(ctl("metrics " + who.id + " --since forever", &out), 2) << out;

  // Offline: the request waits; --wait gives up clearly.
  channel.stop();
  EXPECT_EQ(ctl("request send " + who.id + " gateway.describe --wait --timeout 1", &out), 1) << out;
  EXPECT_NE(out.find("still"), std::string::npos) << out;
  EXPECT_EQ(ctl("request send " + who.id + " gateway.reboot", &out), 1) << out;
  EXPECT_NE(out.find("unknown operation"), std::string::npos) << out;
  EXPECT_EQ(ctl("volume create " + who.id + " v2", &out), 2) << out;
  EXPECT_NE(out.find("--size"), std::string::npos) << out;
}

TEST_F(FerryctlTest, MistakesGetAClearMessageAndANonZeroExit) {
  std::string out;
  EXPECT_EQ(ctl("", &out), 2);
  EXPECT_NE(out.find("usage:"), std::string::npos) << out;
  EXPECT_EQ(ctl("gateway frobnicate", &out), 2);
  EXPECT_NE(out.find("unknown gateway command"), std::string::npos) << out;
  EXPECT_EQ(ctl("--output yaml whoami", &out), 2);

  // A server certificate the CA given does not vouch for.
  TempDir other;
  std::string otherCa = other / "ca.crt";
  {
    Control second(other.path(), "sqlite://" + (other / "control.db"));
    ASSERT_TRUE(second.start()) << second.log();
    otherCa = second.caPath();
    EXPECT_EQ(ctl("--endpoint " + endpoint_ + " --ca " + otherCa + " whoami", &out), 1);
    EXPECT_NE(out.find("TLS"), std::string::npos) << out;
  }
  EXPECT_EQ(ctl("--endpoint https://127.0.0.1:1 --ca " + control_->caPath() + " whoami", &out), 1);
  EXPECT_NE(out.find("cannot reach"), std::string::npos) << out;
  EXPECT_EQ(ctl("--endpoint " + endpoint_ + " --ca " + control_->caPath() + " login a@b.co --password-stdin", &out,
                "wrong-password"),
            1);
  EXPECT_NE(out.find("wrong email or password"), std::string::npos) << out;
}

}  // namespace
