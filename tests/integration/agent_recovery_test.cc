// Volumes made on one gateway from another's data, end to end through the API: from a
// snapshot, and — the gateway lost (killed) — from its volume's last recovery point,
// with the content of exactly that point and what the recovery may have lost said.
// On file:// stores in agent_test, on radosgw in agent_s3_test.

#include <gtest/gtest.h>

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent_fixture.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using ferry::testing::Agent;
using ferry::testing::NbdClient;
using ferry::testing::TempDir;

using AgentRecoveryTest = ferry::testing::AgentFixture;

constexpr size_t kSize = 16 << 20;

std::vector<uint8_t> readVolume(int port, const std::string& name) {
  NbdClient nbd;
  std::vector<uint8_t> out(kSize);
  EXPECT_TRUE(nbd.connectTcp("127.0.0.1", port, name)) << nbd.error();
  EXPECT_TRUE(nbd.pread(out.data(), out.size(), 0)) << nbd.error();
  return out;
}

// The newest recovery point of a volume in a gateway's store, and when it was begun
// (Unix ms, from its id: rp-<16 hex digits>).
std::pair<std::string, int64_t> newestPoint(ferry::testing::TestStores& stores, const std::string& gateway,
                                            const std::string& volume) {
  std::pair<std::string, int64_t> best{"", 0};
  const std::string prefix = "volumes/" + volume + "/snapshots/";
  for (const std::string& key : stores.keys(gateway, prefix)) {
    std::string name = key.substr(prefix.size());
    if (name.rfind("rp-", 0) != 0 || name.size() < 19 || name < best.first) continue;
    best = {name.substr(0, name.size() - 5), std::stoll(name.substr(3, 16), nullptr, 16)};
  }
  return best;
}

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST_F(AgentRecoveryTest, FromASnapshotAndFromALostGatewaysRecoveryPoint) {
  TempDir dirB;
  // A short lease: the purge below waits for the killed gateway's leases to lapse.
  Agent a(agentDir_.path(), *control_, "engine.args = recovery-interval=1 lease-ttl=3\n");
  Agent b(dirB.path(), *control_);
  std::string gwA = activate(a), gwB = activate(b);
  ASSERT_FALSE(gwA.empty());
  ASSERT_FALSE(gwB.empty());
  ASSERT_EQ(waitFinished(createVolume(gwA, "disk0", "16M"))["state"], "done");

  auto client = std::make_unique<NbdClient>();
  NbdClient& nbd = *client;
  ASSERT_TRUE(nbd.connectTcp("127.0.0.1", a.nbdPort(), "disk0")) << nbd.error();
  auto p1 = ferry::testing::randomBytes(kSize, 1);
  ASSERT_TRUE(nbd.pwrite(p1.data(), p1.size(), 0) && nbd.flush()) << nbd.error();
  auto snap = api("POST", "/v1/gateways/" + gwA + "/volumes/disk0/snapshots");
  ASSERT_EQ(snap.status, 202) << snap.text;
  ASSERT_EQ(waitFinished(snap.body["request"]["id"])["state"], "done");
  std::string snapId = snap.body["snapshot"]["id"];
  // The volume moves on.
  auto q = p1;
  auto p2 = ferry::testing::randomBytes(4 << 20, 2);
  std::copy(p2.begin(), p2.end(), q.begin());
  ASSERT_TRUE(nbd.pwrite(p2.data(), p2.size(), 0) && nbd.flush()) << nbd.error();
  int64_t afterP2 = nowMs();

  // On gateway B, from the snapshot in A's store: the content when it was taken.
  auto fromSnap = api("POST", "/v1/gateways/" + gwB + "/volumes", {{"name", "fromsnap"}, {"snapshot", snapId}});
  ASSERT_EQ(fromSnap.status, 202) << fromSnap.text;
  json made = waitFinished(fromSnap.body["request"]["id"]);
  ASSERT_EQ(made["state"], "done") << made << b.log();
  auto v = api("GET", "/v1/gateways/" + gwB + "/volumes/fromsnap").body["volume"];
  EXPECT_EQ(v["size"], kSize);
  EXPECT_EQ(v["source"]["snapshot"], snapId) << v;
  EXPECT_TRUE(readVolume(b.nbdPort(), "fromsnap") == p1) << "the volume is not the snapshot";

  // A recovery point after P2, then more writes, then gateway A is lost.
  for (int i = 0; i < 300 && newestPoint(stores_, gwA, "disk0").second <= afterP2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GT(newestPoint(stores_, gwA, "disk0").second, afterP2) << "no recovery point after the writes";
  auto q3 = q;
  auto p3 = ferry::testing::randomBytes(2 << 20, 3);
  std::copy(p3.begin(), p3.end(), q3.begin() + (8 << 20));
  ASSERT_TRUE(nbd.pwrite(p3.data(), p3.size(), 8 << 20) && nbd.flush()) << nbd.error();
  client.reset();
  a.kill9();
  for (int i = 0; i < 100 && api("GET", "/v1/gateways/" + gwA).body["gateway"].value("online", true); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(api("GET", "/v1/gateways/" + gwA).body["gateway"].value("online", true));
  // Its nbdkit follows the agent out (--exit-with-parent) with a clean shutdown, which
  // may take one more point (seen: one a second after the newest listed here at once):
  // the newest once none has come for 3 s (points every second here).
  std::string lastPoint = newestPoint(stores_, gwA, "disk0").first;  // ".json" cut
  for (int i = 0, same = 0; i < 300 && same < 30; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::string now = newestPoint(stores_, gwA, "disk0").first;
    same = now == lastPoint ? same + 1 : 0;
    lastPoint = now;
  }

  auto recover = api("POST", "/v1/gateways/" + gwB + "/volumes",
                     {{"name", "recovered"}, {"from", {{"gateway_id", gwA}, {"volume", "disk0"}}}});
  ASSERT_EQ(recover.status, 202) << recover.text;
  json rec = waitFinished(recover.body["request"]["id"]);
  ASSERT_EQ(rec["state"], "done") << rec << b.log();
  auto r = api("GET", "/v1/gateways/" + gwB + "/volumes/recovered").body["volume"];
  ASSERT_TRUE(r["source"].is_object()) << r;
  EXPECT_EQ(r["source"]["recovery_point"], true);
  EXPECT_EQ(r["source"]["used"]["snapshot"], lastPoint) << r;
  EXPECT_GE(r["source"].value("seconds_before_last_seen", int64_t{-1}), 0) << r;
  // Exactly the newest point: Q (the P3 writes came after it), or Q with P3 if a point
  // was taken in the instant between them and the kill.
  auto got = readVolume(b.nbdPort(), "recovered");
  EXPECT_TRUE(got == q || got == q3) << "the recovered volume is not a recovery point";
  if (got == q3) std::cout << "a recovery point was taken after the last writes\n";

  // Bad sources: a snapshot or a volume that is not there, or not the account's.
  auto none = api("POST", "/v1/gateways/" + gwB + "/volumes", {{"name", "x"}, {"snapshot", "snap-nope"}});
  EXPECT_EQ(none.status, 404) << none.text;
  auto noVol = api("POST", "/v1/gateways/" + gwB + "/volumes",
                   {{"name", "x"}, {"from", {{"gateway_id", gwA}, {"volume", "nope"}}}});
  EXPECT_EQ(noVol.status, 404) << noVol.text;
  auto small = api("POST", "/v1/gateways/" + gwB + "/volumes", {{"name", "x"}, {"snapshot", snapId}, {"size", "1M"}});
  EXPECT_EQ(small.status, 400) << "smaller than the snapshot: " << small.text;
  auto chunk =
      api("POST", "/v1/gateways/" + gwB + "/volumes", {{"name", "x"}, {"snapshot", snapId}, {"chunk_size", "4M"}});
  EXPECT_EQ(chunk.status, 400) << "another chunk size than the snapshot's: " << chunk.text;
  auto bob = ferry::testing::signUpAndLogIn(*control_, "bob@example.com");
  auto foreign =
      control_->call("POST", "/v1/gateways/" + gwB + "/volumes", json{{"name", "x"}, {"snapshot", snapId}}.dump(), bob);
  EXPECT_EQ(foreign.status, 404) << foreign.text;

  // The lost gateway's store, cleaned up by B: refused for a gateway that is online
  // or as its own helper; retried while A's leases have not lapsed or B still reads
  // A's snapshots (hydration); then A's store is empty, A's record is gone and B's
  // volumes read the same.
  auto online = api("POST", "/v1/gateways/" + gwB + "/purge", {{"via", gwA}});
  EXPECT_EQ(online.status, 409) << online.text;
  EXPECT_NE(online.text.find("is online"), std::string::npos) << online.text;
  EXPECT_EQ(api("POST", "/v1/gateways/" + gwA + "/purge", {{"via", gwA}}).status, 400);
  EXPECT_EQ(api("POST", "/v1/gateways/" + gwA + "/purge", {{"by", gwB}}).status, 400);
  EXPECT_EQ(control_->call("POST", "/v1/gateways/" + gwA + "/purge", "{}", bob).status, 404);
  json purged;
  int attempts = 0;
  for (; attempts < 20; ++attempts) {
    auto purge = api("POST", "/v1/gateways/" + gwA + "/purge", json::object());
    ASSERT_EQ(purge.status, 202) << purge.text;
    EXPECT_EQ(purge.body["request"]["gateway_id"], gwB);
    purged = waitFinished(purge.body["request"]["id"]);
    if (purged["state"] == "done") break;
    std::string why = purged["error"].value("message", "");
    ASSERT_TRUE(why.find("in use by gateway") != std::string::npos || why.find("being made from") != std::string::npos)
        << purged;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_EQ(purged["state"], "done") << purged;
  std::cout << "purged after " << attempts << " refusal(s)\n";
  EXPECT_EQ(purged["result"]["deleted"].size(), 1u) << purged;  // disk0
  EXPECT_TRUE(stores_.keys(gwA, "volumes/").empty());
  EXPECT_EQ(api("GET", "/v1/gateways/" + gwA).status, 404);
  EXPECT_TRUE(readVolume(b.nbdPort(), "recovered") == got);
  EXPECT_TRUE(readVolume(b.nbdPort(), "fromsnap") == p1);
}

}  // namespace
