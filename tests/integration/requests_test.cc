// The outbox end to end on one server: requests made through the API reach a gateway
// holding its channel (or wait for it), its answers finish them, and what they change
// (volumes, snapshots) follows. On SQLite and PostgreSQL.

#include <gtest/gtest.h>

#include <atomic>
#include <ctime>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "activate.h"
#include "control_process.h"
#include "gateway_channel.h"
#include "gateway_key.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using ferry::testing::Control;
using ferry::testing::GatewayChannel;
using ferry::testing::GatewayKey;
using ferry::testing::TempDir;

using ferry::testing::kFastTimers;

// A gateway that does what it is asked: volumes are created and deleted, snapshots
// taken; "fail" in a volume's name makes it refuse.
json obedient(const json& req) {
  std::string op = req.value("op", "");
  const json& args = req["args"];
  if (op == "volume.create" && args.value("name", "").find("fail") != std::string::npos) {
    return {{"ok", false}, {"error", {{"code", "no_space"}, {"message", "the cache disk is full"}}}};
  }
  if (op == "snapshot.create" && args.value("volume", "").find("brokenstore") != std::string::npos) {
    return {{"ok", false}, {"error", {{"code", "io_error"}, {"message", "the store is unreachable"}}}};
  }
  if (op == "snapshot.create") return {{"ok", true}, {"result", {{"snapshot", args["snapshot"]}, {"chunks", 4}}}};
  return {{"ok", true}, {"result", {{"op", op}}}};
}

class RequestsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string url = ferry::testing::controlDatabaseUrl(GetParam(), dir_);
    if (url.empty()) GTEST_SKIP() << "no PostgreSQL (the pg fixture did not start)";
    control_ = std::make_unique<Control>(dir_.path(), url, kFastTimers);
    ASSERT_TRUE(control_->start()) << control_->log();
    token_ = ferry::testing::signUpAndLogIn(*control_, "ann@example.com");
    who_ = ferry::testing::activateGateway(*control_, token_, key_);
  }
  Control::Reply api(const std::string& method, const std::string& path, const json& body = nullptr) {
    return control_->call(method, path, body.is_null() ? "" : body.dump(), token_);
  }
  // Waits for a request to reach a final state; its JSON.
  json waitFinished(const std::string& id, int seconds = 15) {
    return ferry::testing::waitFinished(*control_, token_, id, seconds);
  }
  std::string gw() const { return who_.id; }

  TempDir dir_;
  std::unique_ptr<Control> control_;
  std::string token_;
  GatewayKey key_;
  GatewayChannel::Identity who_;
};

TEST_P(RequestsTest, AVolumeCreatedThroughTheApiReachesTheGatewayAndBecomesAvailable) {
  GatewayChannel channel(who_, {control_->channelPort()}, obedient);
  channel.start();
  auto r = api("POST", "/v1/gateways/" + gw() + "/volumes", {{"name", "disk0"}, {"size", "64M"}});
  ASSERT_EQ(r.status, 202) << r.text;
  EXPECT_EQ(r.body["volume"]["state"], "creating");
  EXPECT_EQ(r.body["volume"]["chunk_size"], 1 << 20) << "the default chunk";
  std::string id = r.body["request"]["id"];
  EXPECT_EQ(r.body["request"]["args"], (json{{"name", "disk0"}, {"size", 64 << 20}, {"chunk_size", 1 << 20}}));
  json done = waitFinished(id);
  EXPECT_EQ(done["state"], "done") << done;
  EXPECT_EQ(done["result"], (json{{"op", "volume.create"}}));
  EXPECT_EQ(done["attempts"], 1);
  EXPECT_EQ(channel.executions(id), 1);
  auto v = api("GET", "/v1/gateways/" + gw() + "/volumes/disk0");
  EXPECT_EQ(v.body["volume"]["state"], "available") << v.text;
  auto list = api("GET", "/v1/gateways/" + gw() + "/volumes");
  ASSERT_EQ(list.body["volumes"].size(), 1u) << list.text;

  // A snapshot of it, then its deletion; the request history holds all three.
  auto s = api("POST", "/v1/gateways/" + gw() + "/volumes/disk0/snapshots");
  ASSERT_EQ(s.status, 202) << s.text;
  std::string snap = s.body["snapshot"]["id"];
  EXPECT_EQ(waitFinished(s.body["request"]["id"])["state"], "done");
  auto snaps = api("GET", "/v1/gateways/" + gw() + "/volumes/disk0/snapshots");
  ASSERT_EQ(snaps.body["snapshots"].size(), 1u);
  EXPECT_EQ(snaps.body["snapshots"][0]["state"], "completed");
  EXPECT_EQ(snaps.body["snapshots"][0]["detail"]["chunks"], 4);
  auto del = api("DELETE", "/v1/gateways/" + gw() + "/snapshots/" + snap);
  ASSERT_EQ(del.status, 202) << del.text;
  EXPECT_EQ(del.body["request"]["args"], (json{{"snapshot", snap}, {"volume", "disk0"}}));
  EXPECT_EQ(waitFinished(del.body["request"]["id"])["state"], "done");
  EXPECT_TRUE(api("GET", "/v1/gateways/" + gw() + "/snapshots").body["snapshots"].empty());
  auto history = api("GET", "/v1/gateways/" + gw() + "/requests");
  ASSERT_EQ(history.body["requests"].size(), 3u) << history.text;
  EXPECT_EQ(history.body["requests"][0]["op"], "snapshot.delete") << "newest first";
}

TEST_P(RequestsTest, ARequestWaitsForAnOfflineGatewayAndIsDeliveredWhenItConnects) {
  auto r = api("POST", "/v1/gateways/" + gw() + "/requests", {{"op", "gateway.describe"}});
  ASSERT_EQ(r.status, 202) << r.text;
  EXPECT_EQ(r.body["routing"]["how"], "pending");
  std::string id = r.body["request"]["id"];
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(api("GET", "/v1/requests/" + id).body["request"]["state"], "pending");
  GatewayChannel channel(who_, {control_->channelPort()}, obedient);
  channel.start();
  EXPECT_EQ(waitFinished(id)["state"], "done");
  EXPECT_EQ(channel.executions(id), 1);
  // Connected: the next one is pushed at once.
  r = api("POST", "/v1/gateways/" + gw() + "/requests", {{"op", "gateway.describe"}});
  EXPECT_EQ(r.body["routing"]["how"], "local") << r.text;
  EXPECT_EQ(waitFinished(r.body["request"]["id"])["state"], "done");
}

TEST_P(RequestsTest, AGatewaysRefusalFailsTheRequestWithItsError) {
  GatewayChannel channel(who_, {control_->channelPort()}, obedient);
  channel.start();
  auto r = api("POST", "/v1/gateways/" + gw() + "/volumes", {{"name", "fail0"}, {"size", 1 << 20}});
  ASSERT_EQ(r.status, 202) << r.text;
  json failed = waitFinished(r.body["request"]["id"]);
  EXPECT_EQ(failed["state"], "failed");
  EXPECT_EQ(failed["error"]["message"], "the cache disk is full");
  EXPECT_EQ(api("GET", "/v1/gateways/" + gw() + "/volumes/fail0").status, 404) << "a failed create leaves nothing";
}

TEST_P(RequestsTest, AFailedSnapshotIsDeletedAtOnceAndAVolumeOnlyOnce) {
  GatewayChannel channel(who_, {control_->channelPort()}, obedient);
  channel.start();
  std::string base = "/v1/gateways/" + gw();
  auto v = api("POST", base + "/volumes", {{"name", "brokenstore0"}, {"size", "64M"}});
  ASSERT_EQ(waitFinished(v.body["request"]["id"])["state"], "done");
  auto s = api("POST", base + "/volumes/brokenstore0/snapshots");
  ASSERT_EQ(waitFinished(s.body["request"]["id"])["state"], "failed");
  std::string snap = s.body["snapshot"]["id"];
  EXPECT_EQ(api("GET", base + "/snapshots").body["snapshots"][0]["state"], "failed");
  auto del = api("DELETE", base + "/snapshots/" + snap);
  EXPECT_EQ(del.status, 204) << "nothing on the gateway to delete: " << del.text;
  EXPECT_TRUE(api("GET", base + "/snapshots").body["snapshots"].empty());
  // Two deletes of one volume: the second is refused, not queued.
  channel.stop();
  EXPECT_EQ(api("DELETE", base + "/volumes/brokenstore0").status, 202);
  EXPECT_EQ(api("DELETE", base + "/volumes/brokenstore0").status, 409);
}

TEST_P(RequestsTest, ARequestLostWithItsConnectionIsDeliveredAgainAndAppliedOnce) {
  // The first time it arrives the gateway dies before applying it; the connection
  // drops; on the next connection it comes again and is applied, once.
  std::atomic<int> seen{0};
  GatewayChannel* self = nullptr;
  GatewayChannel channel(who_, {control_->channelPort()}, [&](const json& req) -> json {
    if (seen++ == 0) {
      self->drop();
      return nullptr;
    }
    return obedient(req);
  });
  self = &channel;
  channel.start();
  for (int i = 0; i < 100 && !channel.connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto r = api("POST", "/v1/gateways/" + gw() + "/requests", {{"op", "gateway.describe"}});
  std::string id = r.body["request"]["id"];
  json done = waitFinished(id);
  EXPECT_EQ(done["state"], "done") << done;
  EXPECT_EQ(done["attempts"], 2);
  EXPECT_EQ(channel.received(id), 2);
  EXPECT_EQ(channel.executions(id), 1);
  EXPECT_GE(channel.connections(), 2);
}

TEST_P(RequestsTest, BadRequestsAreRefusedAndStoreNothing) {
  std::string base = "/v1/gateways/" + gw();
  EXPECT_EQ(api("POST", base + "/requests", {{"op", "gateway.format"}}).status, 400) << "unknown operation";
  EXPECT_EQ(api("POST", base + "/requests", {{"op", "volume.create"}, {"args", {{"name", "x"}}}}).status, 400)
      << "volumes are made through /volumes";
  EXPECT_EQ(api("POST", base + "/requests", {{"op", "gateway.describe"}, {"args", {{"x", 1}}}}).status, 400);
  EXPECT_EQ(api("POST", base + "/volumes", {{"name", "v"}}).status, 400) << "no size";
  EXPECT_EQ(api("POST", base + "/volumes", {{"name", "v"}, {"size", "ten gigs"}}).status, 400);
  EXPECT_EQ(api("POST", base + "/volumes", {{"name", "../etc"}, {"size", "1G"}}).status, 400);
  EXPECT_EQ(api("POST", base + "/volumes", {{"name", "v"}, {"size", "1G"}, {"chunk_size", 3000}}).status, 400);
  EXPECT_EQ(control_->call("POST", base + "/volumes", "{not json", token_).status, 400);
  EXPECT_EQ(api("POST", base + "/volumes?routing=sideways", {{"name", "v"}, {"size", "1G"}}).status, 400);
  EXPECT_EQ(api("GET", base + "/volumes/none").status, 404);
  EXPECT_EQ(api("DELETE", base + "/volumes/none").status, 404);
  EXPECT_EQ(api("POST", base + "/volumes/none/snapshots").status, 404);
  EXPECT_EQ(api("GET", "/v1/requests/req-nope").status, 404);
  EXPECT_EQ(api("PUT", base + "/volumes").status, 405);
  EXPECT_EQ(api("GET", base + "/whatever").status, 404);
  EXPECT_TRUE(api("GET", base + "/requests").body["requests"].empty());
  EXPECT_TRUE(api("GET", base + "/volumes").body["volumes"].empty());
  ASSERT_EQ(api("POST", base + "/volumes", {{"name", "v"}, {"size", "1G"}}).status, 202);
  EXPECT_EQ(api("POST", base + "/volumes", {{"name", "v"}, {"size", "1G"}}).status, 409) << "the name is taken";
}

TEST_P(RequestsTest, AnotherCustomerGets404ForEverything) {
  auto made = api("POST", "/v1/gateways/" + gw() + "/volumes", {{"name", "v"}, {"size", "1G"}});
  ASSERT_EQ(made.status, 202);
  std::string bob = ferry::testing::signUpAndLogIn(*control_, "bob@example.com");
  std::string base = "/v1/gateways/" + gw();
  for (const auto& [m, p] : std::vector<std::pair<std::string, std::string>>{
           {"GET", base + "/volumes"},
           {"GET", base + "/volumes/v"},
           {"DELETE", base + "/volumes/v"},
           {"POST", base + "/volumes/v/snapshots"},
           {"GET", base + "/snapshots"},
           {"GET", base + "/requests"},
           {"GET", "/v1/requests/" + made.body["request"]["id"].get<std::string>()}}) {
    EXPECT_EQ(control_->call(m, p, "", bob).status, 404) << m << " " << p;
  }
  EXPECT_EQ(control_->call("POST", base + "/volumes", R"({"name":"w","size":"1G"})", bob).status, 404);
  EXPECT_EQ(control_->call("POST", base + "/requests", R"({"op":"gateway.shutdown"})", bob).status, 404);
  EXPECT_EQ(api("GET", base + "/requests").body["requests"].size(), 1u) << "bob stored nothing";
}

TEST_P(RequestsTest, MetricsCountRequestsAndFrames) {
  GatewayChannel channel(who_, {control_->channelPort()}, obedient);
  channel.start();
  auto r = api("POST", "/v1/gateways/" + gw() + "/requests", {{"op", "gateway.describe"}});
  waitFinished(r.body["request"]["id"]);
  auto m = control_->call("GET", "/metrics");
  EXPECT_NE(m.text.find("ferry_control_requests{state=\"done\"} 1"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("ferry_control_channel_frames_total{kind=\"answer\"} 1"), std::string::npos) << m.text;
}

TEST_P(RequestsTest, ACertificateRenewalSignsOnlyTheGatewaysOwnKeyAndQueuesTheInstall) {
  GatewayKey stranger;
  std::atomic<bool> honest{false};
  std::mutex m;
  json installed;
  GatewayChannel channel(who_, {control_->channelPort()}, [&](const json& req) -> json {
    if (req["op"] == "certificate.renew") {
      return {{"ok", true}, {"result", {{"csr", honest ? key_.csr() : stranger.csr()}}}};
    }
    if (req["op"] == "certificate.install") {
      std::lock_guard<std::mutex> l(m);
      installed = req["args"];
    }
    return {{"ok", true}, {"result", json::object()}};
  });
  channel.start();
  auto r = api("POST", "/v1/gateways/" + gw() + "/requests", {{"op", "certificate.renew"}});
  ASSERT_EQ(r.status, 202) << r.text;
  json refused = waitFinished(r.body["request"]["id"]);
  EXPECT_EQ(refused["state"], "failed") << "a CSR for another key";
  EXPECT_EQ(refused["error"]["code"], "bad_csr") << refused;

  honest = true;
  r = api("POST", "/v1/gateways/" + gw() + "/requests", {{"op", "certificate.renew"}});
  EXPECT_EQ(waitFinished(r.body["request"]["id"])["state"], "done");
  json install;
  for (int i = 0; i < 100 && install.is_null(); ++i) {
    json history = api("GET", "/v1/gateways/" + gw() + "/requests").body;
    for (const auto& q : history["requests"]) {
      if (q["op"] == "certificate.install") install = q;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(install.is_null()) << "the signed certificate is queued for the gateway";
  EXPECT_EQ(waitFinished(install["id"])["state"], "done");
  std::lock_guard<std::mutex> l(m);
  ASSERT_TRUE(installed.is_object());
  EXPECT_NE(installed.value("certificate", "").find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE(installed.value("certificate", ""), who_.certificatePem) << "a new certificate";
  EXPECT_GT(installed.value("not_after", int64_t{0}), ::time(nullptr));
}

// Bandwidth limits: checked, kept with a growing revision, sent to the gateway with its
// time zone; bad settings are refused with the reason and change nothing.
TEST_P(RequestsTest, BandwidthLimitsAreCheckedKeptAndSentWithTheGatewaysTimeZone) {
  GatewayChannel channel(who_, {control_->channelPort()}, obedient);
  channel.start();
  auto none = api("GET", "/v1/gateways/" + gw() + "/bandwidth");
  ASSERT_EQ(none.status, 200) << none.text;
  EXPECT_EQ(none.body["bandwidth"]["revision"], 0);
  EXPECT_EQ(none.body["bandwidth"]["upload_rate"], 0);
  EXPECT_EQ(none.body["bandwidth"]["in_force"]["upload_rate"], 0);

  json setting = {{"upload_rate", "1M"},
                  {"schedule", {{{"days", {"sat", "sun"}}, {"start", "00:00"}, {"end", "24:00"},
                                 {"upload_rate", 0}, {"download_rate", "256K"}}}}};
  auto set = api("PUT", "/v1/gateways/" + gw() + "/bandwidth", setting);
  ASSERT_EQ(set.status, 202) << set.text;
  EXPECT_EQ(set.body["bandwidth"]["revision"], 1);
  EXPECT_EQ(set.body["request"]["op"], "bandwidth.set");
  json args = set.body["request"]["args"];
  EXPECT_EQ(args["revision"], 1);
  EXPECT_EQ(args["timezone"], "UTC");
  EXPECT_EQ(args["limits"]["upload_rate"], 1 << 20);
  EXPECT_EQ(args["limits"]["schedule"][0]["download_rate"], 256 << 10);
  EXPECT_EQ(waitFinished(set.body["request"]["id"])["state"], "done");

  auto again = api("PUT", "/v1/gateways/" + gw() + "/bandwidth", json{{"download_rate", 65536}});
  ASSERT_EQ(again.status, 202) << again.text;
  EXPECT_EQ(again.body["request"]["args"]["revision"], 2);
  auto now = api("GET", "/v1/gateways/" + gw() + "/bandwidth");
  EXPECT_EQ(now.body["bandwidth"]["revision"], 2);
  EXPECT_EQ(now.body["bandwidth"]["download_rate"], 65536);
  EXPECT_EQ(now.body["bandwidth"]["upload_rate"], 0);
  EXPECT_TRUE(now.body["bandwidth"]["schedule"].empty());

  size_t requests = api("GET", "/v1/gateways/" + gw() + "/requests").body["requests"].size();
  for (const char* bad : {R"({"upload_rate": 100})", R"({"schedule": [{"days": ["mon"], "start": "9", "end": "10:00"}]})",
                          R"({"speed": 5})", R"([1, 2])"}) {
    auto r = control_->call("PUT", "/v1/gateways/" + gw() + "/bandwidth", bad, token_);
    EXPECT_EQ(r.status, 400) << bad << " → " << r.text;
    EXPECT_FALSE(r.body["error"].value("message", "").empty()) << r.text;
  }
  EXPECT_EQ(api("GET", "/v1/gateways/" + gw() + "/bandwidth").body["bandwidth"]["revision"], 2) << "nothing changed";
  EXPECT_EQ(api("GET", "/v1/gateways/" + gw() + "/requests").body["requests"].size(), requests);
  // bandwidth.set goes through its resource only.
  auto direct = api("POST", "/v1/gateways/" + gw() + "/requests", {{"op", "bandwidth.set"}, {"args", args}});
  EXPECT_EQ(direct.status, 400) << direct.text;

  // Another account sees none of it.
  std::string other = ferry::testing::signUpAndLogIn(*control_, "bob@example.com");
  EXPECT_EQ(control_->call("GET", "/v1/gateways/" + gw() + "/bandwidth", "", other).status, 404);
  EXPECT_EQ(control_->call("PUT", "/v1/gateways/" + gw() + "/bandwidth", "{}", other).status, 404);
}

// Metrics reports up the channel are stored and served by time range and volume;
// malformed ones are dropped; another account gets 404.
TEST_P(RequestsTest, MetricsReportsAreStoredAndServedOverTime) {
  GatewayChannel channel(who_, {control_->channelPort()}, obedient);
  channel.start();
  for (int i = 0; i < 100 && !channel.connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(channel.connected());
  int64_t t = static_cast<int64_t>(::time(nullptr));
  auto report = [&](int64_t at, int64_t up) {
    return json{{"report", "metrics"},
                {"at", at},
                {"interval", 60},
                {"gateway",
                 {{"cache_hit_ratio", 0.75}, {"cached_bytes", 1000}, {"dirty_bytes", 10},
                  {"upload_buffer_used", 0.25}, {"bytes_up", up}, {"bytes_down", 5}}},
                {"volumes",
                 {{{"name", "disk0"}, {"cache_hit_ratio", nullptr}, {"cached_bytes", 600}, {"dirty_bytes", 10},
                   {"bytes_up", up}, {"bytes_down", 5}}}}}
        .dump();
  };
  channel.send(report(t - 120, 100));
  channel.send(report(t - 60, 200));
  channel.send(R"({"report":"metrics","at":"yesterday"})");
  channel.send(report(t - 30 * 86400, 300));  // too old
  json samples;
  for (int i = 0; i < 100; ++i) {
    samples = api("GET", "/v1/gateways/" + gw() + "/metrics?volume=*&since=" + std::to_string(t - 3600)).body;
    if (samples["samples"].size() >= 4) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(samples["samples"].size(), 4u) << samples;
  auto totals = api("GET", "/v1/gateways/" + gw() + "/metrics?since=" + std::to_string(t - 3600)).body["samples"];
  ASSERT_EQ(totals.size(), 2u) << totals;
  EXPECT_EQ(totals[0]["at"], t - 120) << "oldest first";
  EXPECT_EQ(totals[1]["bytes_up"], 200);
  EXPECT_EQ(totals[0]["cache_hit_ratio"], 0.75);
  EXPECT_EQ(totals[0]["upload_buffer_used"], 0.25);
  EXPECT_FALSE(totals[0].contains("volume"));
  auto vol = api("GET", "/v1/gateways/" + gw() + "/metrics?volume=disk0&since=" + std::to_string(t - 90)).body["samples"];
  ASSERT_EQ(vol.size(), 1u) << vol;
  EXPECT_EQ(vol[0]["volume"], "disk0");
  EXPECT_TRUE(vol[0]["cache_hit_ratio"].is_null()) << "no reads in the interval";
  EXPECT_EQ(api("GET", "/v1/gateways/" + gw() + "/metrics?since=soon").status, 400);
  EXPECT_EQ(api("GET", "/v1/gateways/" + gw() + "/metrics?volume=../x").status, 400);
  std::string other = ferry::testing::signUpAndLogIn(*control_, "bob@example.com");
  EXPECT_EQ(control_->call("GET", "/v1/gateways/" + gw() + "/metrics", "", other).status, 404);
}

// A snapshot schedule (an "hour" is a second here): snapshots come by themselves, the
// ones past keep are deleted through snapshot.delete, a hand-made one is never touched.
TEST_P(RequestsTest, AScheduleTakesSnapshotsAndKeepsTheLastOnes) {
  GatewayChannel channel(who_, {control_->channelPort()}, obedient);
  channel.start();
  auto v = api("POST", "/v1/gateways/" + gw() + "/volumes", {{"name", "disk0"}, {"size", "64M"}});
  ASSERT_EQ(waitFinished(v.body["request"]["id"])["state"], "done");
  auto manual = api("POST", "/v1/gateways/" + gw() + "/volumes/disk0/snapshots");
  ASSERT_EQ(waitFinished(manual.body["request"]["id"])["state"], "done");
  std::string manualId = manual.body["snapshot"]["id"];

  EXPECT_EQ(api("GET", "/v1/gateways/" + gw() + "/volumes/disk0/schedule").status, 404) << "none yet";
  auto set = api("PUT", "/v1/gateways/" + gw() + "/volumes/disk0/schedule", {{"every_hours", 1}, {"keep", 2}});
  ASSERT_EQ(set.status, 200) << set.text;
  EXPECT_EQ(set.body["schedule"]["every_hours"], 1);
  EXPECT_GT(set.body["schedule"]["next_at"].get<int64_t>(), ::time(nullptr) - 1);

  // Wait for five scheduled snapshots to have been asked for.
  auto scheduledCreates = [&] {
    int n = 0;
    json history = api("GET", "/v1/gateways/" + gw() + "/requests?limit=1000").body;  // kept: the loop reads it
    for (const auto& q : history["requests"]) {
      if (q["op"] == "snapshot.create" && q["args"]["snapshot"] != manualId) ++n;
    }
    return n;
  };
  for (int i = 0; i < 200 && scheduledCreates() < 5; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GE(scheduledCreates(), 5) << control_->log();
  auto del = api("DELETE", "/v1/gateways/" + gw() + "/volumes/disk0/schedule");
  EXPECT_EQ(del.status, 204) << del.text;
  EXPECT_EQ(api("GET", "/v1/gateways/" + gw() + "/volumes/disk0/schedule").status, 404);

  // Settled: the hand-made one, and at most keep (2) scheduled ones, all completed
  // (one more may still be on its way when the schedule stopped).
  json snaps;
  for (int i = 0; i < 100; ++i) {
    snaps = api("GET", "/v1/gateways/" + gw() + "/volumes/disk0/snapshots").body["snapshots"];
    bool settled = true;
    for (const auto& s : snaps) settled = settled && s["state"] == "completed";
    if (settled) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  int scheduled = 0;
  bool manualKept = false;
  for (const auto& s : snaps) {
    if (s["scheduled"] == true) ++scheduled;
    if (s["id"] == manualId) manualKept = true;
  }
  EXPECT_TRUE(manualKept) << snaps;
  EXPECT_GE(scheduled, 2) << snaps;
  EXPECT_LE(scheduled, 3) << snaps;
  int deletes = 0;
  json history = api("GET", "/v1/gateways/" + gw() + "/requests?limit=1000").body;
  for (const auto& q : history["requests"]) {
    if (q["op"] == "snapshot.delete") ++deletes;
  }
  EXPECT_GE(deletes, 2) << "the old scheduled snapshots were deleted on the gateway";

  // Bad input and other accounts.
  EXPECT_EQ(api("PUT", "/v1/gateways/" + gw() + "/volumes/disk0/schedule", {{"every_hours", 0}, {"keep", 2}}).status, 400);
  EXPECT_EQ(api("PUT", "/v1/gateways/" + gw() + "/volumes/disk0/schedule", {{"every_hours", 2}}).status, 400);
  EXPECT_EQ(api("PUT", "/v1/gateways/" + gw() + "/volumes/nope/schedule", {{"every_hours", 2}, {"keep", 1}}).status, 404);
  std::string other = ferry::testing::signUpAndLogIn(*control_, "bob@example.com");
  EXPECT_EQ(control_->call("PUT", "/v1/gateways/" + gw() + "/volumes/disk0/schedule",
                           R"({"every_hours": 2, "keep": 1})", other).status, 404);
}

// While the gateway is offline a schedule keeps one snapshot waiting, not one per run.
TEST_P(RequestsTest, AnOfflineGatewayGetsOneScheduledSnapshotNotOnePerRun) {
  {
    GatewayChannel channel(who_, {control_->channelPort()}, obedient);
    channel.start();
    auto v = api("POST", "/v1/gateways/" + gw() + "/volumes", {{"name", "disk0"}, {"size", "64M"}});
    ASSERT_EQ(waitFinished(v.body["request"]["id"])["state"], "done");
  }
  ASSERT_EQ(api("PUT", "/v1/gateways/" + gw() + "/volumes/disk0/schedule", {{"every_hours", 1}, {"keep", 2}}).status,
            200);
  std::this_thread::sleep_for(std::chrono::seconds(5));  // five "hours"
  json snaps = api("GET", "/v1/gateways/" + gw() + "/volumes/disk0/snapshots").body;
  ASSERT_EQ(snaps["snapshots"].size(), 1u) << snaps;
  EXPECT_EQ(snaps["snapshots"][0]["state"], "pending");
}

INSTANTIATE_TEST_SUITE_P(Backends, RequestsTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& p) { return p.param; });

}  // namespace
