// Recovery points: the engine keeps the latest crash-consistent point of each changed
// volume in the store; a lost gateway's volume is recovered on another gateway from
// it (losing only what came after), and a live volume is cloned from it while it
// keeps changing.

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "engine.h"
#include "engine_options.h"
#include "format.h"
#include "lease.h"
#include "store_test.h"
#include "test_stores.h"
#include "test_util.h"

namespace ferry {
namespace {

using testing::randomBytes;
using testing::TempDir;

constexpr uint64_t kChunk = 64 << 10;
constexpr uint64_t kSize = 16 * kChunk;

class RecoveryTest : public testing::StoreTest {
 protected:
  std::unique_ptr<Engine> open(const std::string& state, const std::string& store, int recoverySeconds,
                               std::vector<CreateSpec> creates = {{"vol", kSize, kChunk}}, size_t hydrateThreads = 4) {
    // Store "a" behind the fault seam.
    EngineOptions o = testing::smallEngine(dir_ / state, storeUrl(store), store == "a" ? control_ : nullptr);
    o.creates = std::move(creates);
    o.shutdownTimeoutSeconds = 1;
    o.uploadDelayMs = 20;
    o.recoveryIntervalSeconds = recoverySeconds;
    o.hydrateThreads = hydrateThreads;
    return testing::startEngine(o);
  }
  std::string storeUrl(const std::string& store) { return stores_.url(store); }
  static std::vector<uint8_t> readAll(Volume& v) {
    std::vector<uint8_t> out(v.size());
    EXPECT_TRUE(v.read(0, out));
    return out;
  }
};

TEST_F(RecoveryTest, PointsAreTakenOfChangedVolumesAndOnlyTheLatestKept) {
  auto e = open("gw", "a", 1);
  auto v = e->find("vol");
  ASSERT_TRUE(v->write(0, randomBytes(3 * kChunk, 1), false));
  ASSERT_TRUE(testing::waitUntil([&] { return !e->listRecoveryPoints("vol").value().empty(); })) << "no recovery point";
  std::string first = e->listRecoveryPoints("vol").value().back();
  ASSERT_TRUE(v->write(kChunk, randomBytes(kChunk, 2), false));
  ASSERT_TRUE(testing::waitUntil([&] {
    auto p = e->listRecoveryPoints("vol").value();
    return p.size() == 1 && p.back() != first;
  })) << "no newer point, or the older one stayed";
  // Unchanged: no new point.
  std::string latest = e->listRecoveryPoints("vol").value().back();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(e->listRecoveryPoints("vol").value(), std::vector<std::string>{latest});
  // They are not the customer's snapshots.
  EXPECT_TRUE(e->listSnapshots("vol").value().empty());
}

// Gateway A is lost with writes it never stored; gateway B, with a store of its own,
// recovers the volume from A's last recovery point: exactly the content then.
TEST_F(RecoveryTest, ALostGatewaysVolumeIsRecoveredFromItsLastPoint) {
  auto p1 = randomBytes(kSize, 3);
  int64_t pointTime = 0;
  {
    auto a = open("a-state", "a", 0);
    auto v = a->find("vol");
    ASSERT_TRUE(v->write(0, p1, false));
    auto point = a->takeRecoveryPoint("vol");
    ASSERT_TRUE(point) << point.status().toString();
    pointTime = point.value().createdUnix;
    // Later writes, flushed on the gateway but never stored: the store goes away.
    control_->down = true;
    ASSERT_TRUE(v->write(0, randomBytes(4 * kChunk, 4), true));
    a->shutdown();
  }
  control_->down = false;
  std::filesystem::remove_all(dir_ / "a-state");  // the gateway is gone

  auto b = open("b-state", "b", 0, {});
  // Under its own name: in another store, another volume.
  auto made = b->createVolume({"vol", 0, 0, "vol", Engine::kLatestRecoveryPoint, storeUrl("a")});
  ASSERT_TRUE(made) << made.status().toString();
  EXPECT_EQ(made.value()->sourceCreatedUnix(), pointTime);
  EXPECT_EQ(made.value()->sourceSnapshot().rfind(Engine::kRecoveryPrefix, 0), 0u);
  EXPECT_TRUE(readAll(*made.value()) == p1) << "the recovered volume is not the recovery point";
  ASSERT_TRUE(testing::waitUntil([&] { return !made.value()->hydrating(); }));
  EXPECT_TRUE(readAll(*made.value()) == p1);

  // A volume with no recovery point: said so.
  auto none = b->createVolume({"x", 0, 0, "nothing", Engine::kLatestRecoveryPoint, storeUrl("a")});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.status().code(), Code::kNotFound);
}

// A live volume cloned from its latest recovery point while it keeps changing and
// taking newer points: the held point outlives rotation until the clone is hydrated.
TEST_F(RecoveryTest, ALiveVolumeIsClonedFromItsLatestPoint) {
  auto e = open("gw", "a", 0);
  auto v = e->find("vol");
  auto p1 = randomBytes(kSize, 5);
  ASSERT_TRUE(v->write(0, p1, false));
  auto point = e->takeRecoveryPoint("vol");
  ASSERT_TRUE(point);
  // No hydration threads: the clone keeps reading the point until a snapshot of it
  // copies the rest (with threads, a fast store finished it before the newer point).
  auto other = open("other", "b", 0, {}, /*hydrateThreads=*/0);
  CreateSpec spec{"clone", 0, 0, "vol", Engine::kLatestRecoveryPoint, storeUrl("a")};
  auto c = other->createVolume(spec);
  ASSERT_TRUE(c) << c.status().toString();
  EXPECT_EQ(c.value()->sourceSnapshot(), point.value().id);
  // The source moves on and takes a newer point: the held one stays.
  ASSERT_TRUE(v->write(0, randomBytes(kSize, 6), false));
  auto newer = e->takeRecoveryPoint("vol");
  ASSERT_TRUE(newer);
  auto points = e->listRecoveryPoints("vol").value();
  EXPECT_EQ(points.size(), 2u) << "the held point was rotated away";
  EXPECT_TRUE(readAll(*c.value()) == p1);
  EXPECT_TRUE(c.value()->hydrating());
  // A snapshot of the clone copies what it still reads from the point, then lets go.
  ASSERT_TRUE(other->snapshot("clone", "s", std::chrono::seconds(30)));
  EXPECT_FALSE(c.value()->hydrating());
  // Released: the next point rotates both older ones away.
  ASSERT_TRUE(v->write(0, randomBytes(kChunk, 7), false));
  auto third = e->takeRecoveryPoint("vol");
  ASSERT_TRUE(third);
  EXPECT_EQ(e->listRecoveryPoints("vol").value(), std::vector<std::string>{third.value().id});
  EXPECT_TRUE(readAll(*c.value()) == p1);
}

// A lost gateway's store, cleaned up by another gateway once nothing can write its
// volumes (leases lapsed) and nothing reads their snapshots (holds).
TEST_F(RecoveryTest, ALostGatewaysStoreIsPurgedOnceNothingReadsIt) {
  auto p1 = randomBytes(kSize, 8);
  // On a: "clone" is still being made from a snapshot of "vol" when a is lost (no
  // hydration threads): its hold on that snapshot must not keep "vol" from going.
  auto a = open("a-state", "a", 0, {{"vol", kSize, kChunk}, {"other", kSize, kChunk}}, /*hydrateThreads=*/0);
  ASSERT_TRUE(a->find("vol")->write(0, p1, false));
  ASSERT_TRUE(a->find("other")->write(kChunk, randomBytes(2 * kChunk, 9), false));
  ASSERT_TRUE(a->snapshot("vol", "s1", std::chrono::seconds(30)));
  ASSERT_TRUE(a->takeRecoveryPoint("other"));
  ASSERT_TRUE(a->createVolume({"clone", 0, 0, "vol", "s1", ""}));

  auto b = open("b-state", "b", 0, {}, /*hydrateThreads=*/0);
  auto own = b->purgeStore(storeUrl("b"));
  ASSERT_FALSE(own);
  EXPECT_EQ(own.status().code(), Code::kInvalidArgument);
  // Gateway a still runs: its leases are live, nothing goes.
  auto live = b->purgeStore(storeUrl("a"));
  ASSERT_TRUE(live) << live.status().toString();
  EXPECT_TRUE(live->deleted.empty());
  ASSERT_EQ(live->refused.size(), 3u);
  EXPECT_NE(live->refused[0].second.toString().find("in use by gateway"), std::string::npos)
      << live->refused[0].second.toString();
  const std::string aId = a->gatewayId();
  a->shutdown();  // releases its leases
  a.reset();

  // A volume on b still reads a's snapshot: that volume of a is refused, the others
  // go (the clone first gives up its own hold).
  auto copy = b->createVolume({"copy", 0, 0, "vol", "s1", storeUrl("a")});
  ASSERT_TRUE(copy) << copy.status().toString();
  auto held = b->purgeStore(storeUrl("a"));
  ASSERT_TRUE(held) << held.status().toString();
  ASSERT_EQ(held->deleted.size(), 2u);
  EXPECT_EQ(held->deleted[0].first, "clone");
  EXPECT_EQ(held->deleted[1].first, "other");
  EXPECT_GE(held->deleted[1].second, 5u);  // header, lease, two chunks, the point
  EXPECT_EQ(stores_.keys("a", holdsPrefix("vol")).size(), 1u) << "only copy's hold is left";
  ASSERT_EQ(held->refused.size(), 1u);
  EXPECT_EQ(held->refused[0].first, "vol");
  EXPECT_EQ(held->refused[0].second.code(), Code::kBusy) << held->refused[0].second.toString();
  EXPECT_TRUE(stores_.keys("a", "volumes/other/").empty());
  EXPECT_TRUE(stores_.keys("a", "volumes/clone/").empty());
  EXPECT_TRUE(stores_.exists("a", snapshotKey("vol", "s1")));
  EXPECT_TRUE(readAll(*copy.value()) == p1);
  // The refused volume's lease is as gateway a left it: a coming back finds its own.
  auto lease = readLease(stores_.client("a"), "vol");
  ASSERT_TRUE(lease && lease.value()) << lease.status().toString();
  EXPECT_EQ(lease.value()->owner, aId);

  // Hydrated (b restarted with hydration threads): now it all goes.
  b->shutdown();
  b.reset();
  b = open("b-state", "b", 0, {});
  copy = b->find("copy");
  ASSERT_TRUE(copy);
  ASSERT_TRUE(testing::waitUntil([&] { return !copy.value()->hydrating(); }));
  auto done = b->purgeStore(storeUrl("a"));
  ASSERT_TRUE(done) << done.status().toString();
  EXPECT_TRUE(done->refused.empty()) << done->refused[0].second.toString();
  ASSERT_EQ(done->deleted.size(), 1u);
  EXPECT_TRUE(stores_.keys("a", "volumes/").empty());
  EXPECT_TRUE(readAll(*copy.value()) == p1);
  // Nothing left: a rerun is a no-op.
  auto again = b->purgeStore(storeUrl("a"));
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->deleted.empty() && again->refused.empty());
}

// A gateway taken for lost, whose store another gateway purged, comes back: it must not
// bring its volume back (a fresh lease, its dirty chunks uploaded into an empty
// prefix). Its copy is served read-only; a takeover=true start drops it.
TEST_F(RecoveryTest, AGatewayBackAfterItsStoreWasPurgedDoesNotBringItsVolumeBack) {
  auto data = randomBytes(kSize, 12);
  {
    auto a = open("a-state", "a", 0);
    ASSERT_TRUE(a->find("vol")->write(0, data, false));
    ASSERT_TRUE(a->checkpoint("vol", std::chrono::seconds(30)));
    control_->chunkPutsFail = true;  // what is written from here on stays dirty
    auto change = randomBytes(kChunk, 13);
    ASSERT_TRUE(a->find("vol")->write(kChunk, change, false));
    std::copy(change.begin(), change.end(), data.begin() + static_cast<long>(kChunk));
    a->shutdown();  // 1 s: the change stays dirty, the lease is not released
  }
  control_->chunkPutsFail = false;
  std::this_thread::sleep_for(std::chrono::seconds(4));  // a's lease (3 s) lapses
  auto b = open("b-state", "b", 0, {});
  auto purged = b->purgeStore(storeUrl("a"));
  ASSERT_TRUE(purged) << purged.status().toString();
  ASSERT_EQ(purged->deleted.size(), 1u) << (purged->refused.empty() ? "" : purged->refused[0].second.toString());
  ASSERT_TRUE(stores_.keys("a", "volumes/").empty());

  {
    auto a = open("a-state", "a", 0, {});
    auto v = a->find("vol");
    ASSERT_TRUE(v) << "the gateway's other volumes start; this one is served read-only";
    EXPECT_TRUE(v->fenced());
    EXPECT_TRUE(readAll(*v) == data) << "the copy stays readable here";
    EXPECT_EQ(v->write(0, randomBytes(512, 14), false).code(), Code::kFenced);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // uploads, renewals, commits
    EXPECT_TRUE(stores_.keys("a", "volumes/").empty()) << "the purged volume came back";
    a->shutdown();
  }
  EngineOptions o = testing::smallEngine(dir_ / "a-state", storeUrl("a"), control_);
  o.takeover = true;
  auto a = testing::startEngine(o);
  EXPECT_FALSE(a->find("vol")) << "takeover=true drops the copy: there is nothing to adopt";
  EXPECT_TRUE(stores_.keys("a", "volumes/").empty());
}

// A purge cut short (the store stops deleting halfway) leaves the volume leased to the
// purging gateway; its rerun takes the volume again and finishes it.
TEST_F(RecoveryTest, APurgeCutShortIsFinishedByARerun) {
  {
    auto a = open("a-state", "a", 0);
    ASSERT_TRUE(a->find("vol")->write(0, randomBytes(8 * kChunk, 10), false));
    ASSERT_TRUE(a->takeRecoveryPoint("vol"));
    a->shutdown();
  }
  // b reaches a's store through a fault seam of its own.
  auto faults = std::make_shared<testing::FaultyStore::Control>();
  EngineOptions o = testing::smallEngine(dir_ / "b-state", storeUrl("b"), faults);
  o.creates = {};
  o.hydrateThreads = 0;
  auto b = testing::startEngine(o);
  faults->removeBudget = 3;
  auto cut = b->purgeStore(storeUrl("a"));
  ASSERT_TRUE(cut) << cut.status().toString();
  ASSERT_EQ(cut->refused.size(), 1u);
  EXPECT_TRUE(cut->deleted.empty());
  EXPECT_FALSE(stores_.keys("a", "volumes/vol/").empty());
  faults->removeBudget = -1;
  auto rerun = b->purgeStore(storeUrl("a"));
  ASSERT_TRUE(rerun) << rerun.status().toString();
  EXPECT_TRUE(rerun->refused.empty()) << rerun->refused[0].second.toString();
  ASSERT_EQ(rerun->deleted.size(), 1u);
  EXPECT_TRUE(stores_.keys("a", "volumes/").empty());
}

}  // namespace
}  // namespace ferry
