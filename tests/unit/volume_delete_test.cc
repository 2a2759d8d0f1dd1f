// A volume delete cut short at every step (the k+1-th store delete and every one after
// it fail: a store error, or a crash). Before its header goes, the delete is refused
// and the volume stays, whole; after, the name created again (on the same gateway or
// on a restart of it with create=) is a new volume that reads as zeros, never a mix
// with the old one; a gateway adopting it from the store reads the same; and once the
// new one exists, nothing of the old one is left in the store. On file:// and, in
// engine_s3_test, on radosgw (tests/lib/test_stores.h).

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include "engine.h"
#include "engine_options.h"
#include "format.h"
#include "store_test.h"
#include "test_stores.h"
#include "test_util.h"

namespace ferry {
namespace {

using testing::randomBytes;
using testing::TempDir;

constexpr uint64_t kChunk = 64 << 10;
constexpr uint64_t kSize = 8 * kChunk;

class VolumeDeleteTest : public testing::StoreTest {
 protected:
  std::unique_ptr<Engine> open(const std::filesystem::path& dir, const std::string& store,
                               std::vector<CreateSpec> creates = {{"vol", kSize, kChunk}}) {
    EngineOptions o = testing::smallEngine(dir / "state", stores_.url(store), control_);
    o.creates = std::move(creates);
    o.shutdownTimeoutSeconds = 5;
    o.recoveryIntervalSeconds = 0;
    o.collectIntervalSeconds = 0;
    o.hydrateThreads = 0;
    return testing::startEngine(o);
  }
  // vol holds data, stored, and snapshot s of it (withdrawn before the rest of a delete).
  void seed(Engine& e, const std::vector<uint8_t>& data) {
    ASSERT_TRUE(e.find("vol")->write(0, data, false));
    ASSERT_TRUE(e.checkpoint("vol", std::chrono::seconds(30)));
    ASSERT_TRUE(e.snapshot("vol", "s", std::chrono::seconds(30)));
  }
  std::vector<uint8_t> readAll(Engine& e, const std::string& name = "vol") {
    std::vector<uint8_t> out(kSize);
    auto v = e.find(name);
    EXPECT_TRUE(v && v->read(0, out)) << name;
    return out;
  }
  // The volume's chunk objects and journal segments, with their content.
  std::map<std::string, std::string> dataObjects(const std::string& store) {
    std::map<std::string, std::string> out;
    for (const std::string& k : stores_.keys(store, volumePrefix("vol"))) {
      if (k.find("/chunks/") != std::string::npos || k.find("/journal/") != std::string::npos) {
        out[k] = stores_.read(store, k);
      }
    }
    return out;
  }
};

TEST_F(VolumeDeleteTest, ADeleteCutShortAtAnyStepLeavesTheOldVolumeWholeOrNothingOfIt) {
  const auto old = randomBytes(kSize, 1);
  const auto fresh = randomBytes(kChunk, 2);
  const std::vector<uint8_t> zeros(kSize, 0);
  for (int k = 0;; ++k) {
    SCOPED_TRACE("store deletes cut short after " + std::to_string(k));
    TempDir dir;
    const std::string store = "run" + std::to_string(k);
    auto e = open(dir.path(), store);
    ASSERT_NO_FATAL_FAILURE(seed(*e, old));
    const auto oldObjects = dataObjects(store);

    control_->removeBudget = k;
    Status deleted = e->deleteVolume("vol", false);
    control_->removeBudget = -1;
    if (!deleted && e->find("vol")) {
      // Refused before its header went: still served, still whole, and it says so.
      EXPECT_NE(deleted.message().find("nothing of it was deleted"), std::string::npos) << deleted.toString();
      EXPECT_TRUE(readAll(*e) == old);
      EXPECT_TRUE(stores_.exists(store, headerKey("vol")));
      continue;
    }
    // Past its header: no gateway adopts what is left of it, and the error says where
    // that goes.
    EXPECT_FALSE(stores_.exists(store, headerKey("vol")));
    if (!deleted) {
      EXPECT_NE(deleted.message().find("goes when a volume of that name is created"), std::string::npos)
          << deleted.toString();
    }

    // The name again: on the same gateway, or (odd k) on a restart of it with create=,
    // as after a crash in the middle of the delete.
    if (k % 2 == 1) {
      e.reset();
      e = open(dir.path(), store);
    } else {
      auto created = e->createVolume(CreateSpec{"vol", kSize, kChunk});
      ASSERT_TRUE(created) << created.status().toString();
    }
    std::vector<uint8_t> expect = zeros;
    EXPECT_TRUE(readAll(*e) == expect) << "the new volume reads old data";
    ASSERT_TRUE(e->find("vol")->write(0, fresh, false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    std::copy(fresh.begin(), fresh.end(), expect.begin());
    e.reset();

    // A gateway adopting it from the store reads what the new volume holds.
    TempDir other;
    auto adopted = open(other.path(), store);
    EXPECT_TRUE(readAll(*adopted) == expect) << "an adopting gateway reads something else";
    for (const auto& [key, body] : dataObjects(store)) {
      auto was = oldObjects.find(key);
      EXPECT_FALSE(was != oldObjects.end() && was->second == body)
          << key << " of the deleted volume is still in the store";
    }
    if (deleted) {
      std::cout << "the delete made " << k << " store deletes; each was cut short in turn\n";
      break;
    }
    ASSERT_LT(k, 64) << "the delete never finished";
  }
}

// A crash after a delete removed the header but before the volume's row went: the
// next start serves the volume read-only (it would otherwise write to objects that a
// create of the name deletes), says why, and a delete removes it from the gateway.
TEST_F(VolumeDeleteTest, AStartThatFindsItsVolumesHeaderGoneServesItReadOnlyUntilDeleted) {
  TempDir dir;
  const auto old = randomBytes(kSize, 5);
  {
    auto e = open(dir.path(), "s");
    ASSERT_TRUE(e->find("vol")->write(0, old, false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  }
  ASSERT_TRUE(stores_.client("s").remove(headerKey("vol")));  // the lease stays: still this gateway's
  auto e = open(dir.path(), "s");
  auto v = e->find("vol");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->fenced());
  EXPECT_NE(v->stats().lastError.find("was being deleted"), std::string::npos) << v->stats().lastError;
  EXPECT_TRUE(readAll(*e) == old);
  EXPECT_FALSE(v->write(0, randomBytes(4096, 6), false)) << "written with its header gone";
  ASSERT_TRUE(e->deleteVolume("vol", false));
  auto again = e->createVolume(CreateSpec{"vol", kSize, kChunk});
  ASSERT_TRUE(again) << again.status().toString();
  EXPECT_TRUE(readAll(*e) == std::vector<uint8_t>(kSize, 0));
}

// A delete waits out the uploads of the volume still on their way before it lists its
// objects: one landing after the listing would outlive the volume in the store.
TEST_F(VolumeDeleteTest, UploadsOnTheirWayAreWaitedOutBeforeTheListing) {
  TempDir dir;
  auto e = open(dir.path(), "s");
  ASSERT_TRUE(e->find("vol")->write(0, randomBytes(4 * kChunk, 8), false));
  control_->chunkPutLatencyMs = 1500;
  ASSERT_TRUE(testing::waitUntil([&] { return control_->chunkPuts.load() > 0; }, std::chrono::seconds(10)))
      << "no upload started";
  ASSERT_TRUE(e->deleteVolume("vol", false));
  control_->chunkPutLatencyMs = 0;
  e.reset();
  EXPECT_TRUE(dataObjects("s").empty()) << dataObjects("s").begin()->first << " outlived its volume";
}

// A delete removes its objects from the store with no engine lock held: meanwhile
// other volumes are created and snapshotted; a create of its name waits for the end of
// it, and is a new volume (zeros) whose objects stay.
TEST_F(VolumeDeleteTest, WhileADeleteRemovesItsObjectsOnlyACreateOfItsNameWaits) {
  TempDir dir;
  auto e = open(dir.path(), "s", {{"vol", kSize, kChunk}, {"other", kSize, kChunk}});
  ASSERT_NO_FATAL_FAILURE(seed(*e, randomBytes(kSize, 9)));
  ASSERT_TRUE(e->find("other")->write(0, randomBytes(kChunk, 10), false));
  control_->removeLatencyMs = 500;  // vol's eight chunks and its lease: about 5 s
  std::atomic<bool> done{false};
  Status deleted;
  std::thread remover([&] {
    deleted = e->deleteVolume("vol", false);
    done = true;
  });
  // Gone from the engine: what is left is the removal of its objects.
  ASSERT_TRUE(testing::waitUntil([&] { return !e->find("vol"); }));
  auto made = e->createVolume(CreateSpec{"new", kSize, kChunk});
  EXPECT_TRUE(made) << made.status().toString();
  auto snap = e->snapshot("other", "o1", std::chrono::seconds(30));
  EXPECT_TRUE(snap) << snap.status().toString();
  EXPECT_FALSE(done) << "a create or snapshot of another volume waited for the delete";
  auto again = e->createVolume(CreateSpec{"vol", kSize, kChunk});
  remover.join();
  EXPECT_TRUE(deleted) << deleted.toString();
  ASSERT_TRUE(again) << again.status().toString();
  // Made before the old one's removal ended, its lease would have gone with the old one's.
  EXPECT_TRUE(stores_.exists("s", headerKey("vol")));
  EXPECT_TRUE(stores_.exists("s", leaseKey("vol"))) << "the removal took the new volume's lease";
  control_->removeLatencyMs = 0;
  EXPECT_TRUE(readAll(*e) == std::vector<uint8_t>(kSize, 0));
  const auto fresh = randomBytes(kChunk, 11);
  ASSERT_TRUE(e->find("vol")->write(kChunk, fresh, false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  size_t chunks = 0;
  for (const auto& [key, _] : dataObjects("s")) chunks += key.find("/chunks/") != std::string::npos;
  EXPECT_EQ(chunks, 1u) << "the new volume's chunk, and none of the old one's";
}

// What a create deletes as leftovers is under the name's lease: a volume another
// gateway still holds, its header gone (in the middle of a delete there, a purge), is
// refused, not wiped.
TEST_F(VolumeDeleteTest, LeftoversUnderAnotherGatewaysLiveLeaseAreNotDeleted) {
  TempDir a, b;
  auto holder = open(a.path(), "s");
  ASSERT_TRUE(holder->find("vol")->write(0, randomBytes(kSize, 7), false));
  ASSERT_TRUE(holder->checkpoint("vol", std::chrono::seconds(30)));
  ASSERT_TRUE(stores_.client("s").remove(headerKey("vol")));
  const auto before = dataObjects("s");
  ASSERT_FALSE(before.empty());

  auto other = open(b.path(), "s", {});
  auto created = other->createVolume(CreateSpec{"vol", kSize, kChunk});
  ASSERT_FALSE(created) << "created over a volume another gateway holds";
  EXPECT_EQ(created.status().code(), Code::kBusy) << created.status().toString();
  EXPECT_EQ(dataObjects("s"), before) << "the holder's objects were deleted";
  EXPECT_FALSE(stores_.exists("s", headerKey("vol")));
}

// The same for a volume made from a snapshot and not hydrated yet (its hold on the
// snapshot goes after its header): refused, it keeps its hold and its content; past its
// header, the name made again from the snapshot reads the snapshot, here and on a
// gateway adopting it, not what the deleted volume had written over it.
TEST_F(VolumeDeleteTest, AVolumeMadeFromASnapshotAgainReadsTheSnapshotNotTheOldOnesLeftovers) {
  const auto snap = randomBytes(kSize, 3);
  const auto over = randomBytes(kChunk, 4);
  const CreateSpec copy{"copy", 0, 0, "vol", "s", ""};
  for (int k = 0;; ++k) {
    SCOPED_TRACE("store deletes cut short after " + std::to_string(k));
    TempDir dir;
    const std::string store = "clone" + std::to_string(k);
    auto e = open(dir.path(), store);
    ASSERT_NO_FATAL_FAILURE(seed(*e, snap));
    ASSERT_TRUE(e->createVolume(copy));
    ASSERT_TRUE(e->find("copy")->write(kChunk, over, false));  // an object of its own
    ASSERT_TRUE(e->checkpoint("copy", std::chrono::seconds(30)));
    auto written = snap;
    std::copy(over.begin(), over.end(), written.begin() + kChunk);

    control_->removeBudget = k;
    Status deleted = e->deleteVolume("copy", false);
    control_->removeBudget = -1;
    if (!deleted && e->find("copy")) {
      EXPECT_NE(deleted.message().find("nothing of it was deleted"), std::string::npos) << deleted.toString();
      EXPECT_TRUE(readAll(*e, "copy") == written);
      EXPECT_TRUE(stores_.exists(store, headerKey("copy")));
      EXPECT_TRUE(stores_.exists(store, holdKey("vol", "s", "copy"))) << "the snapshot is no longer held";
      continue;
    }
    EXPECT_FALSE(stores_.exists(store, headerKey("copy")));

    auto again = e->createVolume(copy);
    ASSERT_TRUE(again) << again.status().toString();
    EXPECT_TRUE(readAll(*e, "copy") == snap) << "the volume made again does not read the snapshot";
    e.reset();
    TempDir other;
    auto adopted = open(other.path(), store, {{"vol", kSize, kChunk}, {"copy", kSize, kChunk}});
    EXPECT_TRUE(readAll(*adopted, "copy") == snap) << "an adopting gateway reads the deleted volume's chunk";
    if (deleted) break;
    ASSERT_LT(k, 64) << "the delete never finished";
  }
}

}  // namespace
}  // namespace ferry
