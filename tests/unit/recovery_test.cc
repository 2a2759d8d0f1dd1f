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
#include "test_stores.h"
#include "test_util.h"

namespace ferry {
namespace {

using testing::randomBytes;
using testing::TempDir;

constexpr uint64_t kChunk = 64 << 10;
constexpr uint64_t kSize = 16 * kChunk;

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = stores_.unavailable(); !why.empty()) GTEST_SKIP() << why;
  }
  std::unique_ptr<Engine> open(const std::string& state, const std::string& store, int recoverySeconds,
                               std::vector<CreateSpec> creates = {{"vol", kSize, kChunk}}) {
    // Store "a" behind the fault seam.
    EngineOptions o = testing::smallEngine(dir_ / state, storeUrl(store), store == "a" ? control_ : nullptr);
    o.creates = std::move(creates);
    o.shutdownTimeoutSeconds = 1;
    o.uploadDelayMs = 20;
    o.recoveryIntervalSeconds = recoverySeconds;
    return testing::startEngine(o);
  }
  std::string storeUrl(const std::string& store) { return stores_.url(store); }
  static std::vector<uint8_t> readAll(Volume& v) {
    std::vector<uint8_t> out(v.size());
    EXPECT_TRUE(v.read(0, out));
    return out;
  }
  static bool waitFor(const std::function<bool()>& done) {
    for (int i = 0; i < 400; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return done();
  }

  TempDir dir_;
  testing::TestStores stores_{dir_.path()};
  std::shared_ptr<testing::FaultyStore::Control> control_ = std::make_shared<testing::FaultyStore::Control>();
};

TEST_F(RecoveryTest, PointsAreTakenOfChangedVolumesAndOnlyTheLatestKept) {
  auto e = open("gw", "a", 1);
  auto v = e->find("vol");
  ASSERT_TRUE(v->write(0, randomBytes(3 * kChunk, 1), false));
  ASSERT_TRUE(waitFor([&] { return !e->listRecoveryPoints("vol").value().empty(); })) << "no recovery point";
  std::string first = e->listRecoveryPoints("vol").value().back();
  ASSERT_TRUE(v->write(kChunk, randomBytes(kChunk, 2), false));
  ASSERT_TRUE(waitFor([&] {
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
  ASSERT_TRUE(waitFor([&] { return !made.value()->hydrating(); }));
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
  auto other = open("other", "b", 0, {});
  CreateSpec spec{"clone", 0, 0, "vol", Engine::kLatestRecoveryPoint, storeUrl("a")};
  // Not hydrated yet (no threads would be needed: reads go to the point's objects).
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
  ASSERT_TRUE(waitFor([&] { return !c.value()->hydrating(); }));
  // Released: the next point rotates both older ones away.
  ASSERT_TRUE(v->write(0, randomBytes(kChunk, 7), false));
  auto third = e->takeRecoveryPoint("vol");
  ASSERT_TRUE(third);
  EXPECT_EQ(e->listRecoveryPoints("vol").value(), std::vector<std::string>{third.value().id});
  EXPECT_TRUE(readAll(*c.value()) == p1);
}

}  // namespace
}  // namespace ferry
