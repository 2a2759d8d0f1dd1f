// Snapshots in the engine: a manifest in the store pins the chunk objects of its
// recovery point while the volume moves on; deleting it removes exactly the objects
// only it kept; pins survive a restart; a repeated request gets the same manifest.

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "engine.h"
#include "format.h"
#include "test_util.h"

namespace ferry {
namespace {

using testing::randomBytes;
using testing::TempDir;

constexpr uint64_t kChunk = 64 << 10;

class SnapshotTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> open() {
    EngineOptions o;
    o.stateDir = dir_ / "state";
    o.storeUrl = "file://" + (dir_ / "store") + "?create";
    o.creates = {{"vol", 1 << 20, kChunk}};  // 16 chunks
    o.cacheSize = 16 << 20;
    o.uploadThreads = 2;
    o.leaseTtlSeconds = 3;
    o.commitIntervalMs = 50;
    o.shutdownTimeoutSeconds = 10;
    auto e = Engine::open(o);
    if (!e) throw std::runtime_error(e.status().toString());
    EXPECT_TRUE(e.value()->start());
    return std::move(e).value();
  }
  // Writes data at 0, waits until it is stored, and lets superseded objects go.
  void writeStored(Engine& e, const std::vector<uint8_t>& data) {
    auto v = e.find("vol");
    ASSERT_TRUE(v->write(0, data, false));
    ASSERT_TRUE(e.checkpoint("vol", std::chrono::seconds(30)));
    v->deleteSuperseded();
  }
  std::set<std::string> chunkObjects() {
    auto files = testing::listFiles(dir_ / "store", "/chunks/");
    return {files.begin(), files.end()};
  }
  bool stored(const ChunkKey& k) {
    return std::filesystem::exists(dir_ / "store" + "/" + chunkKey("vol", k.index, k.generation));
  }
  std::string objectText(const ChunkKey& k) {
    return testing::readFile(dir_ / "store" + "/" + chunkKey("vol", k.index, k.generation));
  }

  TempDir dir_;
};

TEST_F(SnapshotTest, AManifestKeepsItsChunksUntilItIsDeleted) {
  auto e = open();
  auto a = randomBytes(4 * kChunk, 1);
  writeStored(*e, a);
  auto s1 = e->snapshot("vol", "snap-1", std::chrono::seconds(30));
  ASSERT_TRUE(s1) << s1.status().toString();
  ASSERT_EQ(s1.value().chunks.size(), 4u);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "store" + "/volumes/vol/snapshots/snap-1.json"));

  // The volume moves on: every chunk rewritten; the snapshot's objects stay, with A.
  auto b = randomBytes(4 * kChunk, 2);
  writeStored(*e, b);
  for (size_t i = 0; i < 4; ++i) {
    const ChunkKey& k = s1.value().chunks[i];
    ASSERT_TRUE(stored(k)) << "chunk " << i << " of the snapshot was deleted";
    EXPECT_EQ(objectText(k), std::string(a.begin() + i * kChunk, a.begin() + (i + 1) * kChunk));
  }
  EXPECT_EQ(chunkObjects().size(), 8u) << "the snapshot's 4 and the volume's 4";

  // A second request for the same snapshot: the same manifest, nothing new.
  auto again = e->snapshot("vol", "snap-1", std::chrono::seconds(30));
  ASSERT_TRUE(again);
  EXPECT_EQ(again.value().createdUnix, s1.value().createdUnix);
  EXPECT_EQ(again.value().chunks[0].generation, s1.value().chunks[0].generation);

  // Deleted: its objects go, the volume's stay; deleting again is done.
  ASSERT_TRUE(e->deleteSnapshot("vol", "snap-1"));
  for (const ChunkKey& k : s1.value().chunks) EXPECT_FALSE(stored(k));
  EXPECT_EQ(chunkObjects().size(), 4u);
  EXPECT_TRUE(e->deleteSnapshot("vol", "snap-1"));
  std::vector<uint8_t> back(b.size());
  ASSERT_TRUE(e->find("vol")->read(0, back));
  EXPECT_EQ(back, b);
}

TEST_F(SnapshotTest, ChunksSharedWithTheVolumeOrAnotherSnapshotStay) {
  auto e = open();
  writeStored(*e, randomBytes(2 * kChunk, 3));
  auto s1 = e->snapshot("vol", "s1", std::chrono::seconds(30));
  ASSERT_TRUE(s1);
  auto s2 = e->snapshot("vol", "s2", std::chrono::seconds(30));
  ASSERT_TRUE(s2);
  // Unchanged since: s1 and s2 share both objects with the volume (incremental).
  EXPECT_EQ(s1.value().chunks[1].generation, s2.value().chunks[1].generation);
  ASSERT_TRUE(e->deleteSnapshot("vol", "s1"));
  EXPECT_EQ(chunkObjects().size(), 2u) << "still the volume's and s2's";
  // Rewrite chunk 0 only: s2 keeps the old object.
  auto v = e->find("vol");
  ASSERT_TRUE(v->write(0, randomBytes(kChunk, 4), false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  v->deleteSuperseded();
  EXPECT_TRUE(stored(s2.value().chunks[0]));
  EXPECT_EQ(chunkObjects().size(), 3u);
  ASSERT_TRUE(e->deleteSnapshot("vol", "s2"));
  EXPECT_FALSE(stored(s2.value().chunks[0]));
  EXPECT_TRUE(stored(s2.value().chunks[1])) << "chunk 1 is still the volume's";
  EXPECT_EQ(chunkObjects().size(), 2u);
  auto ids = e->listSnapshots("vol");
  ASSERT_TRUE(ids);
  EXPECT_TRUE(ids.value().empty());
}

TEST_F(SnapshotTest, PinsComeBackFromTheStoreAfterARestart) {
  SnapshotManifest s;
  {
    auto e = open();
    writeStored(*e, randomBytes(3 * kChunk, 5));
    auto made = e->snapshot("vol", "kept", std::chrono::seconds(30));
    ASSERT_TRUE(made);
    s = made.value();
    e->shutdown();
  }
  auto e = open();
  writeStored(*e, randomBytes(3 * kChunk, 6));
  for (const ChunkKey& k : s.chunks) EXPECT_TRUE(stored(k)) << "pinned by the manifest read at start";
  auto ids = e->listSnapshots("vol");
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids.value(), std::vector<std::string>{"kept"});
}

TEST_F(SnapshotTest, BadIdsAndDamagedManifestsAreRefused) {
  {
    auto e = open();
    EXPECT_EQ(e->snapshot("vol", "../x", std::chrono::seconds(1)).status().code(), Code::kInvalidArgument);
    EXPECT_EQ(e->snapshot("nope", "s", std::chrono::seconds(1)).status().code(), Code::kNotFound);
    e->shutdown();
  }
  // A manifest the gateway cannot read: it does not open the volume (it could delete
  // what the snapshot needs) and says why.
  std::filesystem::create_directories(dir_ / "store" + "/volumes/vol/snapshots");
  std::ofstream(dir_ / "store" + "/volumes/vol/snapshots/bad.json") << "{\"format\": 1, \"volume\"";
  EngineOptions o;
  o.stateDir = dir_ / "state";
  o.storeUrl = "file://" + (dir_ / "store");
  o.cacheSize = 16 << 20;
  auto e = Engine::open(o);
  ASSERT_FALSE(e);
  EXPECT_NE(e.status().message().find("bad.json"), std::string::npos) << e.status().toString();
}

// Leaks (objects a crash or an older owner left) go; the volume's newest objects and
// a snapshot's stay; a second run finds nothing; progress is kept.
TEST_F(SnapshotTest, ACollectionDeletesOnlyWhatNothingNeeds) {
  auto e = open();
  auto a = randomBytes(3 * kChunk, 7);
  writeStored(*e, a);
  auto s = e->snapshot("vol", "s", std::chrono::seconds(30));
  ASSERT_TRUE(s);
  writeStored(*e, randomBytes(kChunk, 8));  // chunk 0 rewritten: s keeps the old one
  // Leaks: generations of an older epoch, and one past the end of the volume.
  for (auto [index, gen] : std::vector<std::pair<uint64_t, uint64_t>>{{0, 1}, {1, 2}, {9, 3}, {40, 4}}) {
    std::ofstream(dir_ / "store" + "/" + chunkKey("vol", index, gen)) << "leaked";
  }
  size_t before = chunkObjects().size();
  auto c = e->collect("vol");
  ASSERT_TRUE(c) << c.status().toString();
  EXPECT_EQ(c.value().deleted, 4u);
  EXPECT_EQ(c.value().errors, 0u);
  EXPECT_EQ(chunkObjects().size(), before - 4);
  for (const ChunkKey& k : s.value().chunks) EXPECT_TRUE(stored(k)) << "the snapshot's objects stay";
  EXPECT_EQ(e->collectProgress("vol").deleted, 4u);
  auto again = e->collect("vol");
  ASSERT_TRUE(again);
  EXPECT_EQ(again.value().deleted, 0u) << "nothing more to find";
  std::vector<uint8_t> back(3 * kChunk);
  ASSERT_TRUE(e->find("vol")->read(0, back));
  EXPECT_TRUE(std::equal(back.begin() + kChunk, back.end(), a.begin() + kChunk));
}

// The engine collects on its own every collect-interval.
TEST_F(SnapshotTest, CollectionsRunOnTheirInterval) {
  EngineOptions o;
  o.stateDir = dir_ / "state";
  o.storeUrl = "file://" + (dir_ / "store") + "?create";
  o.creates = {{"vol", 1 << 20, kChunk}};
  o.cacheSize = 16 << 20;
  o.recoveryIntervalSeconds = 0;
  o.collectIntervalSeconds = 1;
  auto e = Engine::open(o);
  ASSERT_TRUE(e) << e.status().toString();
  ASSERT_TRUE(e.value()->start());
  writeStored(*e.value(), randomBytes(2 * kChunk, 9));
  std::ofstream(dir_ / "store" + "/" + chunkKey("vol", 0, 1)) << "leaked";
  for (int i = 0; i < 100 && stored({0, 1}); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(stored({0, 1})) << "no collection ran";
  EXPECT_GE(e.value()->collectProgress("vol").deleted, 1u);
  EXPECT_EQ(chunkObjects().size(), 2u);
}

// Collections running while the volume is written and uploaded lose nothing: a
// fresh gateway on the same store reads exactly what was written.
TEST_F(SnapshotTest, ACollectionDuringUploadsLosesNothing) {
  std::vector<uint8_t> expect(1 << 20);
  {
    auto e = open();
    auto v = e->find("vol");
    std::atomic<bool> done{false};
    std::thread writer([&] {
      std::mt19937 rng(11);
      for (int i = 0; i < 60; ++i) {
        uint64_t at = (rng() % 16) * kChunk + (rng() % 4) * 4096;
        auto data = randomBytes(4096, static_cast<uint32_t>(i + 100));
        if (Status w = v->write(at, data, false); !w) {
          ADD_FAILURE() << w.toString();
          break;
        }
        std::copy(data.begin(), data.end(), expect.begin() + static_cast<std::ptrdiff_t>(at));
        if (i % 10 == 9) {
          EXPECT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
        }
        v->deleteSuperseded();
      }
      done = true;
    });
    while (!done) {
      auto c = e->collect("vol");
      EXPECT_TRUE(c) << c.status().toString();
      if (c) {
        EXPECT_EQ(c.value().errors, 0u);
      }
    }
    writer.join();
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    ASSERT_TRUE(e->collect("vol"));
    e->shutdown();
  }
  EngineOptions o;
  o.stateDir = dir_ / "fresh";
  o.storeUrl = "file://" + (dir_ / "store");
  o.creates = {{"vol", 1 << 20, kChunk}};
  o.cacheSize = 16 << 20;
  auto fresh = Engine::open(o);
  ASSERT_TRUE(fresh) << fresh.status().toString();
  ASSERT_TRUE(fresh.value()->start());
  std::vector<uint8_t> back(expect.size());
  ASSERT_TRUE(fresh.value()->find("vol")->read(0, back));
  EXPECT_TRUE(back == expect) << "a collection deleted something the volume needed";
}

}  // namespace
}  // namespace ferry
