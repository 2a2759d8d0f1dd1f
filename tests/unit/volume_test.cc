// The engine end to end in-process: volumes over a real file store, with a fault seam
// under the store client. The same behaviours through real nbdkit are in
// tests/integration/plugin_test.cc.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <thread>

#include "engine.h"
#include "engine_options.h"
#include "faulty_store.h"
#include "format.h"
#include "lease.h"
#include "metadata.h"
#include "test_util.h"

namespace ferry {
namespace {

using testing::FaultyStore;
using testing::randomBytes;
using testing::TempDir;

constexpr uint64_t kChunk = 64 << 10;

class EngineTest : public ::testing::Test {
 protected:
  EngineOptions options(const std::string& state, uint64_t volSize = 8 << 20) {
    EngineOptions o;
    o.stateDir = dir_ / state;
    o.storeUrl = "file://" + (dir_ / "store") + "?create";
    o.creates = {{"vol", volSize, kChunk}};
    o.cacheSize = 64 << 20;
    o.uploadThreads = 4;
    o.leaseTtlSeconds = 3;
    o.commitIntervalMs = 50;
    o.shutdownTimeoutSeconds = 10;
    faultsOf(o, control_);
    return o;
  }
  // The store client behind the fault seam of faults (a gateway with faults of its own).
  static void faultsOf(EngineOptions& o, std::shared_ptr<FaultyStore::Control> faults) {
    o.wrapStore = [faults](std::unique_ptr<ObjectStore> s) {
      return std::unique_ptr<ObjectStore>(new FaultyStore(std::move(s), faults));
    };
  }
  std::unique_ptr<Engine> open(const EngineOptions& o) {
    auto e = Engine::open(o);
    if (!e) {
      ADD_FAILURE() << e.status().toString();
      throw std::runtime_error("engine did not open");
    }
    EXPECT_TRUE(e.value()->start());
    return std::move(e).value();
  }
  // A gateway that writes data at offset, uploads it all and goes away cleanly: the
  // store then holds the volume for a fresh gateway to adopt.
  void seedStore(uint64_t offset, const std::vector<uint8_t>& data) {
    auto e = open(options("seed"));
    ASSERT_TRUE(e->find("vol")->write(offset, data, false));
    e->shutdown();
  }
  std::vector<std::string> storeChunks() { return testing::listFiles(dir_ / "store", "/chunks/"); }
  // Until an upload of v has failed (20 s at most).
  static void waitForUploadError(Volume& v) {
    for (int i = 0; i < 400 && v.stats().uploadErrors == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Chunk 0 as a fresh gateway on state, adopting the volume from the store, reads it.
  Status readAdopted(const std::string& state, std::vector<uint8_t>& back) {
    auto e = open(options(state));
    back.assign(kChunk, 1);
    return e->find("vol")->read(0, back);
  }

  TempDir dir_;
  std::shared_ptr<FaultyStore::Control> control_ = std::make_shared<FaultyStore::Control>();
};

TEST_F(EngineTest, WritesReadBackAcrossChunksAndUnwrittenReadsZero) {
  auto e = open(options("s"));
  auto v = e->find("vol");
  ASSERT_TRUE(v);
  auto data = randomBytes(3 * kChunk + 777, 1);
  ASSERT_TRUE(v->write(kChunk / 2 + 5, data, false));
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(v->read(kChunk / 2 + 5, back));
  EXPECT_EQ(back, data);
  std::vector<uint8_t> z(kChunk);
  ASSERT_TRUE(v->read(6 * kChunk, z));
  EXPECT_EQ(z, std::vector<uint8_t>(kChunk, 0));
  EXPECT_EQ(control_->gets.load(), 0u) << "never-written chunks must not touch the store";
}

TEST_F(EngineTest, UploadsImmutableGenerationsAndSkipsZeroChunks) {
  auto e = open(options("s"));
  auto v = e->find("vol");
  auto a = randomBytes(kChunk, 2);
  ASSERT_TRUE(v->write(0, a, false));
  ASSERT_TRUE(v->write(kChunk, std::vector<uint8_t>(kChunk, 0), false));  // zeros: not stored
  auto map = e->checkpoint("vol", std::chrono::seconds(30));
  ASSERT_TRUE(map) << map.status().toString();
  ASSERT_EQ(map->size(), 1u);
  EXPECT_EQ((*map)[0].first, 0u);
  uint64_t gen1 = (*map)[0].second;
  EXPECT_EQ(storeChunks().size(), 1u);

  ASSERT_TRUE(v->write(100, randomBytes(10, 3), false));
  map = e->checkpoint("vol", std::chrono::seconds(30));
  ASSERT_TRUE(map);
  EXPECT_GT((*map)[0].second, gen1);
  // The superseded generation goes once the new one is recorded.
  for (int i = 0; i < 100 && storeChunks().size() != 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto files = storeChunks();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(files[0].find(chunkKey("vol", 0, (*map)[0].second)), std::string::npos);
}

TEST_F(EngineTest, RestartServesCacheAndUploadsWhatWasDirty) {
  auto data = randomBytes(5 * kChunk, 4);
  {
    auto o = options("s");
    o.shutdownTimeoutSeconds = 0;
    auto e = open(o);
    control_->down = true;  // nothing can be uploaded before the stop
    auto v = e->find("vol");
    ASSERT_TRUE(v->write(0, data, false));
    ASSERT_TRUE(v->flush());
  }
  EXPECT_EQ(storeChunks().size(), 0u);
  control_->down = false;
  auto e = open(options("s"));
  auto v = e->find("vol");
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(v->read(0, back));
  EXPECT_EQ(back, data);
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  EXPECT_EQ(storeChunks().size(), 5u);
}

TEST_F(EngineTest, FreshGatewayServesTheStoresContent) {
  auto data = randomBytes(4 * kChunk + 100, 5);
  {
    auto e = open(options("old"));
    ASSERT_TRUE(e->find("vol")->write(kChunk, data, false));
    ASSERT_TRUE(e->find("vol")->zero(kChunk, kChunk, false));  // a zero tombstone over nothing
    e->shutdown();  // uploads, then releases the lease
  }
  auto e = open(options("new"));
  auto v = e->find("vol");
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(v->read(kChunk, back));
  std::fill(data.begin(), data.begin() + kChunk, 0);
  EXPECT_EQ(back, data);
}

TEST_F(EngineTest, ColdSmallReadsAreRangeReadsUntilTheChunkIsFetched) {
  auto data = randomBytes(kChunk, 13);
  seedStore(0, data);
  auto e = open(options("new"));
  auto v = e->find("vol");
  std::vector<uint8_t> small(4096);
  ASSERT_TRUE(v->read(8192, small));
  EXPECT_TRUE(std::equal(small.begin(), small.end(), data.begin() + 8192));
  ASSERT_TRUE(v->read(0, small));
  ASSERT_TRUE(v->read(kChunk - 4096, small));
  EXPECT_TRUE(std::equal(small.begin(), small.end(), data.end() - 4096));
  EXPECT_EQ(v->stats().rangeReads, 3u);
  EXPECT_EQ(v->stats().cachedChunks, 0u);
  ASSERT_TRUE(v->read(100, small));
  EXPECT_TRUE(std::equal(small.begin(), small.end(), data.begin() + 100));
  EXPECT_EQ(v->stats().cachedChunks, 1u) << "the fourth small read of a chunk brings all of it in";
  EXPECT_EQ(v->stats().downloadedBytes, 3 * 4096u + kChunk);
}

// A chunk fetched whole after its small reads, then evicted: its next small reads are
// range reads again, not a whole fetch for the reads it had before it was cached.
TEST_F(EngineTest, AChunkEvictedIsReadInRangesAgain) {
  auto o = options("s", 64 << 20);
  o.cacheSize = 16 << 20;
  auto e = open(o);
  auto v = e->find("vol");
  auto data = randomBytes(kChunk, 17);
  ASSERT_TRUE(v->write(0, data, false));
  // 32 MiB written elsewhere and stored: the cache (16 MiB) lets chunk 0 go.
  auto pushOut = [&](uint32_t seed) {
    for (uint64_t at = 16 << 20; at < (48u << 20); at += 1 << 20)
      ASSERT_TRUE(v->write(at, randomBytes(1 << 20, seed + static_cast<uint32_t>(at >> 20)), false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  };
  pushOut(100);
  std::vector<uint8_t> small(4096);
  auto before = v->stats();
  for (uint64_t page : {3, 9, 5, 7}) {
    ASSERT_TRUE(v->read(page * 4096, small));
    EXPECT_TRUE(std::equal(small.begin(), small.end(), data.begin() + static_cast<long>(page * 4096)));
  }
  auto fetched = v->stats();
  ASSERT_EQ(fetched.readMisses - before.readMisses, 4u) << "chunk 0 stayed in the cache";
  ASSERT_EQ(fetched.rangeReads - before.rangeReads, 3u) << "the fourth small read fetches it whole";
  pushOut(200);
  ASSERT_TRUE(v->read(11 * 4096, small));
  EXPECT_TRUE(std::equal(small.begin(), small.end(), data.begin() + 11 * 4096));
  auto after = v->stats();
  ASSERT_EQ(after.readMisses - fetched.readMisses, 1u) << "chunk 0 stayed in the cache";
  EXPECT_EQ(after.rangeReads - fetched.rangeReads, 1u) << "an evicted chunk was fetched whole on its first small read";
}

TEST_F(EngineTest, AColdSequentialScanDoesNotFillTheCacheUnlessAsked) {
  auto data = randomBytes(8 * kChunk, 14);
  seedStore(0, data);
  for (bool cacheStreams : {false, true}) {
    auto o = options(cacheStreams ? "b" : "a");
    o.cacheStreams = cacheStreams;
    auto e = open(o);
    auto v = e->find("vol");
    std::vector<uint8_t> back(data.size());
    ASSERT_TRUE(v->read(0, back));  // chunk by chunk, in order: a scan
    EXPECT_TRUE(back == data);
    EXPECT_EQ(v->stats().cachedChunks, cacheStreams ? 8u : 1u) << "cache-streams=" << cacheStreams;
    e->shutdown();
  }
}

// A small read of the chunk after one just read whole from the store is taken as a
// sequential scan and fetched whole; after a pause past the scan window it is a range
// read, as any cold small read.
TEST_F(EngineTest, OnlyARecentWholeReadOfTheChunkBeforeMakesAReadSequential) {
  auto data = randomBytes(8 * kChunk, 15);
  seedStore(0, data);
  auto o = options("a");
  o.readAheadBytes = 0;  // chunk 6 would be in the read-ahead window, fetched after chunk 3
  auto e = open(o);
  auto v = e->find("vol");
  std::vector<uint8_t> whole(kChunk), small(4096);
  auto smallReadOf = [&](uint64_t chunk) {
    auto before = v->stats();
    EXPECT_TRUE(v->read(chunk * kChunk + 8192, small));
    EXPECT_TRUE(std::equal(small.begin(), small.end(), data.begin() + static_cast<long>(chunk * kChunk + 8192)));
    return v->stats().rangeReads - before.rangeReads;
  };
  ASSERT_TRUE(v->read(2 * kChunk, whole));
  EXPECT_EQ(smallReadOf(3), 0u) << "the read right after chunk 2 was not taken as a scan";
  ASSERT_TRUE(v->read(5 * kChunk, whole));
  std::this_thread::sleep_for(std::chrono::milliseconds(3300));
  EXPECT_EQ(smallReadOf(6), 1u) << "a read next to a chunk read long ago was taken as a scan";
}

TEST_F(EngineTest, SecondGatewayOnTheSameVolumeIsRefused) {
  auto first = open(options("one"));
  auto second = Engine::open(options("two"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.status().code(), Code::kBusy);
  EXPECT_NE(second.status().message().find("in use by gateway " + first->gatewayId()), std::string::npos)
      << second.status().toString();
}

TEST_F(EngineTest, TakeoverFencesTheOldOwner) {
  auto first = open(options("one"));
  auto o = options("two");
  o.takeover = true;
  auto second = open(o);
  ASSERT_TRUE(second);
  auto v = first->find("vol");
  for (int i = 0; i < 60 && !v->fenced(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(v->fenced());
  Status s = v->write(0, randomBytes(512, 6), false);
  EXPECT_EQ(s.code(), Code::kFenced);
  EXPECT_NE(s.message().find("taken over"), std::string::npos) << s.toString();
}

// A volume taken over with changes it could not upload gives back its share of the
// upload buffer: writers of the gateway's other volumes do not wait on it for ever,
// and what was written to it here stays readable.
TEST_F(EngineTest, AVolumeTakenOverGivesBackItsShareOfTheUploadBuffer) {
  for (bool journal : {false, true}) {
    SCOPED_TRACE(journal ? "journal on" : "journal off");
    std::string tag = journal ? "j" : "w";
    auto o = options(tag + "-one");
    o.storeUrl = "file://" + (dir_ / ("store-" + tag)) + "?create";
    o.creates = {{"vol", 8 << 20, kChunk}, {"other", 8 << 20, kChunk}};
    o.uploadBuffer = 16 * kChunk;
    o.journal = journal;
    auto first = open(o);
    control_->chunkPutsFail = true;  // no chunk of vol reaches the store (segments do)
    auto v = first->find("vol");
    // Journal off: 16 chunks whole fill the buffer. On: a page in four of 64 chunks,
    // which the journal takes once the buffer is half full.
    const uint64_t chunks = journal ? 64 : 16;
    auto data = randomBytes(chunks * kChunk, 21);
    if (!journal) {
      ASSERT_TRUE(v->write(0, data, false));
      EXPECT_TRUE(first->budget().dirtyFull());
    } else {
      std::vector<uint8_t> zeros(data.size(), 0);
      for (uint64_t off = 0; off < data.size(); off += 4 * kJournalPage) {
        ASSERT_TRUE(v->write(off, std::span(data).subspan(off, kJournalPage), false));
        std::copy_n(data.begin() + static_cast<long>(off), kJournalPage, zeros.begin() + static_cast<long>(off));
      }
      data = zeros;
      for (int i = 0; i < 100 && first->budget().journaled() == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ASSERT_GT(first->budget().journaled(), 0u);
    }

    auto o2 = options(tag + "-two");
    o2.storeUrl = o.storeUrl;
    o2.takeover = true;
    o2.journal = journal;
    faultsOf(o2, std::make_shared<FaultyStore::Control>());
    auto second = open(o2);
    for (int i = 0; i < 60 && !v->fenced(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(v->fenced());
    v->stats();  // fence() has given the counts back once it lets go of the volume's lock
    EXPECT_EQ(first->budget().dirty(), 0u);
    EXPECT_EQ(first->budget().journaled(), 0u);
    EXPECT_EQ(first->budget().pinned(), 0u);

    control_->chunkPutsFail = false;
    auto other = first->find("other");
    auto more = randomBytes(16 * kChunk, 22);
    auto w = std::async(std::launch::async, [&] { return other->write(0, more, false); });
    bool done = w.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
    if (!done) first->shutdown();  // lets the writer go, so that the test ends
    ASSERT_TRUE(done) << "a write to another volume waited on the upload buffer the lost volume held";
    EXPECT_TRUE(w.get());
    ASSERT_TRUE(first->checkpoint("other", std::chrono::seconds(30)));

    std::vector<uint8_t> back(data.size());
    ASSERT_TRUE(v->read(0, back));
    EXPECT_TRUE(back == data) << "the lost volume's changes are still readable here";
    EXPECT_EQ(v->stats().dirtyChunks, chunks);
    EXPECT_GT(first->stats().cachedBytes, 0u);
    first->shutdown();
    second->shutdown();
  }
}

// A start that takes several volumes over waits out their owner once per volume (3/4
// of its lease-ttl): the leases it took first are renewed meanwhile, so none of them
// has lapsed (for a third gateway to take) by the time the gateway serves them.
TEST_F(EngineTest, ALongStartKeepsTheLeasesItTookFirst) {
  auto o = options("one");
  o.creates = {{"a", 1 << 20, kChunk}, {"b", 1 << 20, kChunk}, {"c", 1 << 20, kChunk}};
  // Not started either: a renewal of its own racing a takeover's write (read, then
  // write: the store has no conditional PUT) makes that takeover back off, which is
  // right but not what this test is about (seen once under a loaded ctest run).
  auto first = Engine::open(o);
  ASSERT_TRUE(first) << first.status().toString();
  auto o2 = options("two");
  o2.creates = o.creates;
  o2.takeover = true;
  auto began = std::chrono::steady_clock::now();
  auto second = Engine::open(o2);  // not started: only what open itself does renews
  ASSERT_TRUE(second) << second.status().toString();
  ASSERT_GT(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(6500))
      << "three takeovers, each waiting 2.25 s";
  auto store = openStore(o.storeUrl);
  ASSERT_TRUE(store);
  for (const char* name : {"a", "b", "c"}) {
    auto lease = readLease(*store.value(), name);
    ASSERT_TRUE(lease && lease.value()) << name;
    EXPECT_EQ(lease.value()->owner, second.value()->gatewayId()) << name;
    EXPECT_GT(lease.value()->expiresUnix, static_cast<int64_t>(::time(nullptr)))
        << "the lease of " << name << " lapsed while the later volumes were taken over";
  }
}

// An upload whose PUT reached the store but was reported failed (a timeout, the lease
// deadline) leaves an object above the chunk's last known one: zeros written over the
// chunk then need a tombstone, or a gateway adopting the volume reads that object.
TEST_F(EngineTest, ZerosOverAnUploadGivenUpOnStillReachTheStore) {
  {
    auto e = open(options("one"));
    auto v = e->find("vol");
    control_->chunkPutsLandButFail = true;
    ASSERT_TRUE(v->write(0, randomBytes(kChunk, 31), false));
    waitForUploadError(*v);
    ASSERT_GT(v->stats().uploadErrors, 0u);
    ASSERT_TRUE(v->write(0, std::vector<uint8_t>(kChunk, 0), false));
    control_->chunkPutsLandButFail = false;
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    e->shutdown();
  }
  std::vector<uint8_t> back;
  ASSERT_TRUE(readAdopted("two", back));
  EXPECT_EQ(back, std::vector<uint8_t>(kChunk, 0)) << "the adopting gateway reads the upload given up on";
}

// The same across a restart: an upload given up on, or one in flight when the
// gateway was killed, may have stored an object nobody recorded. A chunk still dirty
// at the next start and zeroed before it goes up again gets a tombstone over it.
TEST_F(EngineTest, ZerosAfterARestartOverAnUploadThatMayHaveLandedReachTheStore) {
  auto o = options("one");
  o.shutdownTimeoutSeconds = 1;
  {
    auto e = open(o);
    auto v = e->find("vol");
    control_->chunkPutsLandButFail = true;
    ASSERT_TRUE(v->write(0, randomBytes(kChunk, 33), false));
    waitForUploadError(*v);
    ASSERT_GT(v->stats().uploadErrors, 0u);
    e->shutdown();  // its uploads keep failing: the chunk stays dirty
  }
  control_->chunkPutsLandButFail = false;
  ASSERT_GE(storeChunks().size(), 1u) << "the objects the uploads given up on left";
  {
    // Zeroed before the uploads start (the restarted gateway's first request, ahead of
    // its uploader).
    auto e = Engine::open(o);
    ASSERT_TRUE(e) << e.status().toString();
    ASSERT_TRUE(e.value()->find("vol")->zero(0, kChunk, false));
    ASSERT_TRUE(e.value()->start());
    ASSERT_TRUE(e.value()->checkpoint("vol", std::chrono::seconds(30)));
    e.value()->shutdown();
  }
  std::vector<uint8_t> back;
  ASSERT_TRUE(readAdopted("two", back));
  EXPECT_EQ(back, std::vector<uint8_t>(kChunk, 0)) << "the adopting gateway reads the upload given up on";
}

// After a crash, an upload in flight may have stored an object of a chunk whose row
// never said it was dirty (not committed yet). Until a collection has deleted such
// objects (across clean restarts too), zeros over any chunk go up as a tombstone;
// after one they need none.
TEST_F(EngineTest, AfterACrashZerosReachTheStoreUntilACollectionHasRun) {
  auto o = options("one");
  o.collectIntervalSeconds = 0;  // collections by hand below
  { open(o)->shutdown(); }       // a clean run: chunks 0 and 1 never written
  // What a kill leaves: the running mark, and the object of an upload that landed
  // before its row was committed (epoch 1 was the first run's).
  auto leaked = randomBytes(kChunk, 35);
  std::string stray = dir_ / "store" + "/" + chunkKey("vol", 0, (uint64_t{1} << 32) | 99);
  std::filesystem::create_directories(std::filesystem::path(stray).parent_path());
  {
    std::ofstream(stray) << std::string(leaked.begin(), leaked.end());
    ASSERT_TRUE(std::filesystem::exists(stray));
    ASSERT_TRUE(testing::markCrashed(o.stateDir));
  }
  { open(o)->shutdown(); }  // the start after the crash stops cleanly, before any collection
  {
    // A clean start: the volume's mark from the crash is still there.
    auto e = Engine::open(o);
    ASSERT_TRUE(e) << e.status().toString();
    ASSERT_TRUE(e.value()->find("vol")->zero(0, kChunk, false));
    ASSERT_TRUE(e.value()->start());
    ASSERT_TRUE(e.value()->checkpoint("vol", std::chrono::seconds(30)));
    e.value()->shutdown();
  }
  {
    std::vector<uint8_t> back;
    ASSERT_TRUE(readAdopted("two", back));
    EXPECT_EQ(back, std::vector<uint8_t>(kChunk, 0)) << "the adopting gateway reads the stray object";
  }
  // The same crash on the adopter (a stray object back); a collection ends the tombstones.
  auto o2 = options("two");
  o2.collectIntervalSeconds = 0;
  std::ofstream(stray) << std::string(leaked.begin(), leaked.end());
  ASSERT_TRUE(std::filesystem::exists(stray));
  ASSERT_TRUE(testing::markCrashed(o2.stateDir));
  auto e = open(o2);
  auto c = e->collect("vol");
  ASSERT_TRUE(c) << c.status().toString();
  EXPECT_FALSE(std::filesystem::exists(stray)) << "the collection left the stray object";
  size_t before = storeChunks().size();
  ASSERT_TRUE(e->find("vol")->zero(kChunk, kChunk, false));  // chunk 1: never stored
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  EXPECT_EQ(storeChunks().size(), before) << "a tombstone after the collection";

  // A mark left by a volume deleted before its collection does not outlive it.
  e->shutdown();
  ASSERT_TRUE(testing::markCrashed(o2.stateDir));
  e = open(o2);
  ASSERT_TRUE(e->deleteVolume("vol", true));
  ASSERT_TRUE(e->createVolume({"vol", 8 << 20, kChunk}));
  e->shutdown();
  auto meta = Metadata::open(o2.stateDir, false);
  ASSERT_TRUE(meta) << meta.status().toString();
  EXPECT_EQ(meta.value()->getMeta("unknown-objects:vol").value(), "") << "the deleted volume's mark stayed";
}

// A snapshot can name an object above its chunk's newest known one (a copy whose
// row a crash kept from being committed): zeros over that chunk still go up as a
// tombstone, or a gateway adopting the volume would read the snapshot's object.
TEST_F(EngineTest, ZerosOverAChunkBelowASnapshotsObjectReachTheStore) {
  { open(options("one"))->shutdown(); }  // chunk 0 never stored
  auto copy = randomBytes(kChunk, 36);
  ChunkKey above{0, (uint64_t{1} << 32) | 77};
  std::string object = dir_ / "store" + "/" + chunkKey("vol", above.index, above.generation);
  std::filesystem::create_directories(std::filesystem::path(object).parent_path());
  std::ofstream(object) << std::string(copy.begin(), copy.end());
  SnapshotManifest m;
  m.volume = "vol";
  m.id = "s";
  m.size = 8 << 20;
  m.chunkSize = kChunk;
  m.chunks = {above};
  std::string manifest = dir_ / "store" + "/" + snapshotKey("vol", "s");
  std::filesystem::create_directories(std::filesystem::path(manifest).parent_path());
  std::ofstream(manifest) << encodeManifest(m);
  {
    auto e = open(options("one"));
    ASSERT_TRUE(e->find("vol")->zero(0, kChunk, false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    e->shutdown();
  }
  std::vector<uint8_t> back;
  ASSERT_TRUE(readAdopted("two", back));
  EXPECT_EQ(back, std::vector<uint8_t>(kChunk, 0)) << "the adopting gateway reads the snapshot's object";
}

// Deleting, on the gateway that lost it, a volume another gateway took over removes
// it from this gateway only: the store's volume is the new owner's.
TEST_F(EngineTest, DeletingAVolumeTakenOverLeavesTheStoreToItsNewOwner) {
  auto data = randomBytes(4 * kChunk, 23);
  auto first = open(options("one"));
  ASSERT_TRUE(first->find("vol")->write(0, data, false));
  ASSERT_TRUE(first->checkpoint("vol", std::chrono::seconds(30)));
  auto before = storeChunks();
  ASSERT_EQ(before.size(), 4u);

  auto o = options("two");
  o.takeover = true;
  auto second = open(o);
  // Found out by a lease renewal, or by the delete itself: either way the store stays.
  Status s = first->deleteVolume("vol", false);
  ASSERT_TRUE(s) << s.toString();
  EXPECT_FALSE(first->find("vol"));
  EXPECT_EQ(storeChunks(), before);
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(second->find("vol")->read(0, back));
  EXPECT_TRUE(back == data);
  ASSERT_TRUE(second->find("vol")->write(0, randomBytes(kChunk, 24), false));
  ASSERT_TRUE(second->checkpoint("vol", std::chrono::seconds(30)));
}

// An owner that cannot confirm its lease stops changing the volume in the store once
// the confirmation runs out, before it learns of a takeover: the gateway that takes
// the volume over (after waiting that out) reads it as it found it.
TEST_F(EngineTest, AnOwnerThatCannotConfirmItsLeaseStopsChangingTheStore) {
  auto o = options("one");
  o.uploadDelayMs = 4000;
  o.uploadMaxAgeMs = 4000;
  auto first = open(o);
  auto v = first->find("vol");
  auto old = randomBytes(kChunk, 31);
  ASSERT_TRUE(v->write(0, old, false));
  ASSERT_TRUE(first->checkpoint("vol", std::chrono::seconds(30)));
  auto stored = storeChunks();
  ASSERT_EQ(stored.size(), 1u);

  control_->leaseDown = true;  // it can neither renew nor find out it was taken over
  auto written = std::chrono::steady_clock::now();
  ASSERT_TRUE(v->write(0, randomBytes(kChunk, 32), false));  // goes up 4 s from now
  auto o2 = options("two");
  o2.takeover = true;
  faultsOf(o2, std::make_shared<FaultyStore::Control>());
  auto second = open(o2);
  std::this_thread::sleep_until(written + std::chrono::seconds(6));

  EXPECT_EQ(storeChunks(), stored) << "the old owner uploaded or deleted after its lease ran out";
  std::vector<uint8_t> back(kChunk);
  ASSERT_TRUE(second->find("vol")->read(0, back));
  EXPECT_TRUE(back == old);
  EXPECT_EQ(v->stats().dirtyChunks, 1u);
  EXPECT_NE(v->stats().lastError.find("lease"), std::string::npos) << v->stats().lastError;

  control_->leaseDown = false;  // its next renewal finds the takeover
  for (int i = 0; i < 60 && !v->fenced(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(v->fenced());
  EXPECT_EQ(storeChunks(), stored);
}

// The journal is under the same gate: an owner whose lease is unconfirmed writes no
// segment, however much its upload buffer holds; once a renewal succeeds it does.
TEST_F(EngineTest, AnOwnerThatCannotConfirmItsLeaseWritesNoJournalSegment) {
  auto o = options("one");
  o.uploadBuffer = 8 * kChunk;  // 512 KiB: the journal starts at half of it
  o.uploadDelayMs = 60000;      // whole uploads wait: only the journal could relieve it
  o.uploadMaxAgeMs = 60000;
  o.journal = true;
  auto e = open(o);
  auto v = e->find("vol");
  control_->leaseDown = true;
  std::this_thread::sleep_for(std::chrono::seconds(2));  // past ttl/2 since the last confirmation
  // One page in each of 96 chunks: 384 KiB of changed pages, over half the buffer and
  // under all of it (writes would wait for room nobody can make).
  for (uint64_t c = 0; c < 96; ++c)
    ASSERT_TRUE(v->write(c * kChunk, randomBytes(kJournalPage, static_cast<uint32_t>(100 + c)), false));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto journal = [&] { return testing::listFiles(dir_ / "store", "/journal/"); };
  EXPECT_TRUE(journal().empty()) << "a segment went up with the lease unconfirmed";
  EXPECT_EQ(e->budget().journaled(), 0u);

  control_->leaseDown = false;  // renewed within a second: the journal goes on
  for (int i = 0; i < 100 && e->budget().journaled() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_GT(e->budget().journaled(), 0u);
  EXPECT_FALSE(journal().empty());
}

// Renewals are timed from when each started, as its confirmation is: on a store that
// takes 200 ms a request (two per renewal) the lease stays confirmed at lease-ttl=3.
TEST_F(EngineTest, ALeaseStaysConfirmedOnASlowStore) {
  auto e = open(options("one"));
  auto v = e->find("vol");
  control_->latencyMs = 200;
  std::this_thread::sleep_for(std::chrono::seconds(1));  // a renewal under the latency
  int lapses = 0;
  for (int i = 0; i < 300; ++i) {
    if (!v->leaseCheck()) ++lapses;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  control_->latencyMs = 0;
  EXPECT_EQ(lapses, 0) << "the lease was unconfirmed in " << lapses << " of 300 looks over 3 s";
}

// Deletes are under the same gate. With the lease unconfirmed, a collection and a
// snapshot's deletion change nothing and say why.
TEST_F(EngineTest, AnOwnerThatCannotConfirmItsLeaseDeletesNothing) {
  auto e = open(options("one"));
  auto v = e->find("vol");
  ASSERT_TRUE(v->write(0, randomBytes(4 * kChunk, 51), false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  ASSERT_TRUE(e->snapshot("vol", "s", std::chrono::seconds(30)));
  ASSERT_TRUE(v->write(0, randomBytes(4 * kChunk, 52), false));  // the snapshot keeps the first four
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  for (uint64_t i = 0; i < 8; ++i) std::ofstream(dir_ / "store" + "/" + chunkKey("vol", 8 + i, 1)) << "leaked";
  auto before = storeChunks();
  ASSERT_EQ(before.size(), 16u);
  std::string manifest = dir_ / "store" + "/" + snapshotKey("vol", "s");
  ASSERT_TRUE(std::filesystem::exists(manifest));

  control_->leaseDown = true;
  std::this_thread::sleep_for(std::chrono::seconds(2));  // past ttl/2 since the last confirmation
  auto c = e->collect("vol");
  ASSERT_FALSE(c);
  EXPECT_NE(c.status().message().find("lease"), std::string::npos) << c.status().toString();
  Status d = e->deleteSnapshot("vol", "s");
  ASSERT_FALSE(d);
  EXPECT_NE(d.message().find("lease"), std::string::npos) << d.toString();
  EXPECT_EQ(storeChunks(), before);
  EXPECT_TRUE(std::filesystem::exists(manifest));

  control_->leaseDown = false;
  for (int i = 0; i < 50 && !v->leaseCheck(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(e->deleteSnapshot("vol", "s"));
  auto after = e->collect("vol");
  ASSERT_TRUE(after) << after.status().toString();
  EXPECT_EQ(after.value().deleted, 8u);
  EXPECT_EQ(storeChunks().size(), 4u) << "the volume's own four are left";
}

// A lease that runs out in the middle of a run of deletes stops them there, and what
// is left is deleted after the next renewal: the superseded objects of rewritten
// chunks (put back for later) and a collection (whose next run finds the rest).
TEST_F(EngineTest, DeletesStopWhereTheLeaseRanOutAndGoOnAfterARenewal) {
  auto e = open(options("one"));
  auto v = e->find("vol");
  constexpr uint64_t kChunks = 32;
  ASSERT_TRUE(v->write(0, randomBytes(kChunks * kChunk, 53), false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  ASSERT_EQ(storeChunks().size(), kChunks);
  auto waitFor = [&](size_t n) {
    for (int i = 0; i < 200 && storeChunks().size() != n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return storeChunks().size();
  };

  // Superseded objects: every delete takes 200 ms, one after another; the lease stops
  // being confirmed in the middle.
  control_->latencyMs = 200;
  ASSERT_TRUE(v->write(0, randomBytes(kChunks * kChunk, 54), false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  control_->leaseDown = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // past ttl/2 and a request's grace
  size_t left = storeChunks().size();
  EXPECT_GT(left, kChunks) << "all deleted: the lease did not stop them (or the test lost its race)";
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(storeChunks().size(), left) << "deleted with the lease unconfirmed";
  control_->latencyMs = 0;
  control_->leaseDown = false;
  EXPECT_EQ(waitFor(kChunks), kChunks) << "the rest were not deleted after the renewal";

  // A collection of leaked objects, the same way.
  for (uint64_t i = 0; i < kChunks; ++i) std::ofstream(dir_ / "store" + "/" + chunkKey("vol", i, 1)) << "leaked";
  control_->latencyMs = 200;
  auto collecting = std::async(std::launch::async, [&] { return e->collect("vol"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  control_->leaseDown = true;
  auto c = collecting.get();
  ASSERT_FALSE(c) << "it collected everything: the lease did not stop it (or the test lost its race)";
  EXPECT_NE(c.status().message().find("stopped after"), std::string::npos) << c.status().toString();
  left = storeChunks().size();
  EXPECT_GT(left, kChunks);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(storeChunks().size(), left);
  control_->latencyMs = 0;
  control_->leaseDown = false;
  for (int i = 0; i < 50 && !v->leaseCheck(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto rest = e->collect("vol");
  ASSERT_TRUE(rest) << rest.status().toString();
  EXPECT_EQ(rest.value().deleted, left - kChunks);
  EXPECT_EQ(storeChunks().size(), kChunks);
}

// A gateway restarting on a volume another gateway held since (a takeover) never
// uploads its stale copy over the newer owner's: it serves that copy read-only (its
// other volumes start as usual); with takeover=true it discards the copy and serves
// the store's content.
TEST_F(EngineTest, ARestartAfterATakeoverNeverUploadsTheStaleCopy) {
  auto o = options("one");
  o.creates = {{"vol", 8 << 20, kChunk}, {"other", 8 << 20, kChunk}};
  o.shutdownTimeoutSeconds = 1;
  auto stale = randomBytes(kChunk, 41);
  {
    auto first = open(o);
    ASSERT_TRUE(first->find("vol")->write(0, stale, false));
    control_->down = true;  // its changes stay here, dirty, and so does its lease
    first->shutdown();
  }
  control_->down = false;
  auto newer = randomBytes(kChunk, 42);
  {
    auto o2 = options("two");
    o2.takeover = true;
    auto second = open(o2);
    ASSERT_TRUE(second->find("vol")->write(0, newer, false));
    second->shutdown();  // uploads and lets the lease go
  }
  auto isNewer = [&] {
    std::vector<std::string> chunks;
    for (const std::string& c : storeChunks()) {
      if (c.find("/volumes/vol/") != std::string::npos) chunks.push_back(c);
    }
    if (chunks.size() != 1) return false;
    std::string stored = testing::readFile(chunks[0]);
    return std::vector<uint8_t>(stored.begin(), stored.end()) == newer;
  };
  ASSERT_TRUE(isNewer());
  {
    auto back = open(o);
    auto v = back->find("vol");
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->fenced());
    EXPECT_NE(v->stats().lastError.find("stale"), std::string::npos) << v->stats().lastError;
    std::vector<uint8_t> got(kChunk);
    ASSERT_TRUE(v->read(0, got));
    EXPECT_TRUE(got == stale) << "its own copy, read-only";
    EXPECT_EQ(v->write(0, randomBytes(512, 43), false).code(), Code::kFenced);
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(back->checkpoint("vol", std::chrono::seconds(30)).status().code(), Code::kFenced);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "a checkpoint waited on it";
    EXPECT_TRUE(back->find("other")->write(0, randomBytes(512, 44), false)) << "the other volumes work as usual";
    EXPECT_EQ(back->budget().dirty(), kJournalPage) << "the one page of other; nothing of vol";
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    back->shutdown();
  }
  EXPECT_TRUE(isNewer()) << "the stale copy went up";

  o.takeover = true;
  auto again = open(o);
  std::vector<uint8_t> got(kChunk);
  ASSERT_TRUE(again->find("vol")->read(0, got));
  EXPECT_TRUE(got == newer);
  EXPECT_FALSE(again->find("vol")->fenced());
  again->shutdown();
  EXPECT_TRUE(isNewer());
}

// A start that discarded a stale copy (takeover=true) and crashed before adopting the
// volume again finishes the adoption at the next start, the volume named nowhere else.
TEST_F(EngineTest, AnAdoptionCutShortByACrashIsFinishedAtTheNextStart) {
  auto data = randomBytes(2 * kChunk, 51);
  auto o = options("one");
  {
    auto e = open(o);
    ASSERT_TRUE(e->find("vol")->write(0, data, false));
    e->shutdown();
  }
  {
    // What the discarding start left: the key, the volume's rows gone.
    auto meta = Metadata::open(o.stateDir, false);
    ASSERT_TRUE(meta) << meta.status().toString();
    auto rows = meta.value()->volumes();
    ASSERT_TRUE(rows && rows->size() == 1);
    ASSERT_TRUE(meta.value()->setMeta("readopt:vol", std::to_string(8 << 20) + ":" + std::to_string(kChunk)));
    ASSERT_TRUE(meta.value()->removeVolume(rows->front().id));
  }
  o.creates.clear();
  auto e = open(o);
  auto v = e->find("vol");
  ASSERT_TRUE(v) << "the volume was not adopted again";
  struct stat st {};
  ASSERT_EQ(::stat((o.stateDir + "/vol.cache").c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0) << "the discarded copy's blocks are still on the cache disk";
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(v->read(0, back));
  EXPECT_TRUE(back == data);
  e->shutdown();
  auto meta = Metadata::open(o.stateDir, false);
  ASSERT_TRUE(meta);
  EXPECT_EQ(meta.value()->getMeta("readopt:vol").value(), "");
}

TEST_F(EngineTest, SmallCacheEvictsCleanChunksAndKeepsContent) {
  auto o = options("s", 64 << 20);
  o.cacheSize = 16 << 20;
  o.uploadBuffer = 4 << 20;
  auto e = open(o);
  auto v = e->find("vol");
  std::vector<uint8_t> model(64 << 20, 0);
  std::mt19937 rng(7);
  for (int i = 0; i < 400; ++i) {
    uint64_t off = rng() % (model.size() - 70000);
    size_t len = 1 + rng() % 70000;
    auto d = randomBytes(len, static_cast<uint32_t>(i));
    ASSERT_TRUE(v->write(off, d, false));
    std::copy(d.begin(), d.end(), model.begin() + static_cast<long>(off));
  }
  std::vector<uint8_t> back(model.size());
  ASSERT_TRUE(v->read(0, back));
  EXPECT_TRUE(back == model);
  EXPECT_LE(e->stats().cachedBytes, o.cacheSize);
  EXPECT_GT(v->stats().readMisses, 0u) << "the cache should have evicted and refetched";
}

TEST_F(EngineTest, FullUploadBufferMakesWritesWaitThenDrains) {
  auto o = options("s", 16 << 20);
  o.cacheSize = 16 << 20;
  o.uploadBuffer = 4 * kChunk;
  auto e = open(o);
  auto v = e->find("vol");
  control_->down = true;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(v->write(i * kChunk, randomBytes(kChunk, i), false));
  auto blocked = std::async(std::launch::async, [&] { return v->write(10 * kChunk, randomBytes(100, 9), false); });
  EXPECT_EQ(blocked.wait_for(std::chrono::milliseconds(500)), std::future_status::timeout)
      << "a write past the upload buffer must wait, not fail";
  EXPECT_FALSE(v->stats().lastError.empty());
  control_->down = false;
  ASSERT_EQ(blocked.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_TRUE(blocked.get());
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  EXPECT_EQ(storeChunks().size(), 5u);
}

TEST_F(EngineTest, ZeroingAStoredChunkWritesATombstone) {
  {
    auto e = open(options("old"));
    ASSERT_TRUE(e->find("vol")->write(0, randomBytes(2 * kChunk, 10), false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    ASSERT_TRUE(e->find("vol")->zero(0, kChunk, false));
    auto map = e->checkpoint("vol", std::chrono::seconds(30));
    ASSERT_TRUE(map);
    EXPECT_EQ(map->size(), 1u);
    e->shutdown();
  }
  auto e = open(options("new"));
  std::vector<uint8_t> back(kChunk);
  ASSERT_TRUE(e->find("vol")->read(0, back));
  EXPECT_EQ(back, std::vector<uint8_t>(kChunk, 0));
}

// A chunk zeroed and flushed while its tombstone cannot be stored reads as zeros after
// a restart, and the tombstone goes up then.
TEST_F(EngineTest, AZeroedChunkStaysZeroAcrossARestartBeforeItsTombstoneIsStored) {
  auto o = options("s");
  o.shutdownTimeoutSeconds = 1;
  {
    auto e = open(o);
    auto v = e->find("vol");
    ASSERT_TRUE(v->write(0, randomBytes(kChunk, 12), false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    control_->down = true;
    ASSERT_TRUE(v->zero(0, kChunk, true));
    e->shutdown();  // the tombstone could not go up: the chunk stays dirty
  }
  control_->down = false;
  auto e = open(o);
  std::vector<uint8_t> back(kChunk, 1);
  ASSERT_TRUE(e->find("vol")->read(0, back));
  EXPECT_EQ(back, std::vector<uint8_t>(kChunk, 0)) << "the zeroed chunk read its old data";
  auto map = e->checkpoint("vol", std::chrono::seconds(30));
  ASSERT_TRUE(map);
  EXPECT_TRUE(map->empty()) << "the tombstone was stored";
}

TEST_F(EngineTest, DeniedStoreKeepsDataDirtyWithAClearError) {
  auto e = open(options("s"));
  control_->denied = true;
  ASSERT_TRUE(e->find("vol")->write(0, randomBytes(100, 11), false));
  auto r = e->checkpoint("vol", std::chrono::seconds(2));
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("permission denied"), std::string::npos) << r.status().toString();
  control_->denied = false;
  EXPECT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
}

TEST_F(EngineTest, ABurstOfWritesToAChunkCostsOneUpload) {
  auto o = options("s");
  o.uploadDelayMs = 300;
  o.uploadMaxAgeMs = 60000;
  auto e = open(o);
  auto v = e->find("vol");
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(v->write(static_cast<uint64_t>(i) * 512, randomBytes(512, i), false));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // 800 ms of writes, never idle 300 ms
  }
  EXPECT_EQ(control_->chunkPuts.load(), 0u) << "a chunk still being written must not go up";
  for (int i = 0; i < 100 && control_->chunkPuts.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(control_->chunkPuts.load(), 1u);
  EXPECT_EQ(v->stats().dirtyChunks, 0u);
}

TEST_F(EngineTest, AChunkWrittenWithoutPauseStillGoesUpAtItsMaxAge) {
  auto o = options("s");
  o.uploadDelayMs = 5000;
  o.uploadMaxAgeMs = 400;
  auto e = open(o);
  auto v = e->find("vol");
  for (int i = 0; i < 60 && control_->chunkPuts.load() == 0; ++i) {
    ASSERT_TRUE(v->write(0, randomBytes(512, i), false));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(control_->chunkPuts.load(), 1u);
}

TEST_F(EngineTest, CreateAndDeleteVolumes) {
  auto e = open(options("s"));
  EXPECT_EQ(e->createVolume({"../x", 1 << 20, 0}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(e->createVolume({"vol", 1 << 20, 0}).status().code(), Code::kBusy);
  auto v = e->createVolume({"second", 4 << 20, 0});
  ASSERT_TRUE(v) << v.status().toString();
  ASSERT_TRUE(v.value()->write(0, randomBytes(4096, 12), false));
  ASSERT_TRUE(e->checkpoint("second", std::chrono::seconds(30)));
  e->connectionOpened("second");
  EXPECT_EQ(e->deleteVolume("second", false).code(), Code::kBusy);
  e->connectionClosed("second");
  ASSERT_TRUE(e->deleteVolume("second", false));
  EXPECT_FALSE(e->find("second"));
  EXPECT_TRUE(testing::listFiles(dir_ / "store", "volumes/second").empty());
  EXPECT_EQ(e->deleteVolume("second", false).code(), Code::kNotFound);
}

}  // namespace
}  // namespace ferry
