// The journal: with the upload buffer under pressure, the changed pages of dirty
// chunks go to the store in segments; a gateway adopting the volume (its owner lost)
// applies them; whole uploads void them and their segments go.

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include "engine.h"
#include "engine_options.h"
#include "faulty_store.h"
#include "ferry/file_store.h"
#include "journal_format.h"
#include "store_test.h"
#include "test_stores.h"
#include "test_util.h"

namespace ferry {
namespace {

using testing::randomBytes;
using testing::TempDir;

constexpr uint64_t kChunk = 64 << 10;
constexpr uint64_t kChunks = 64;
constexpr uint64_t kSize = kChunks * kChunk;
// An upload buffer the whole volume fits in four times over: nothing hurries.
constexpr uint64_t kRoomy = 16 << 20;

TEST(JournalFormatTest, EntriesRoundTripAndBadSegmentsAreRefused) {
  std::vector<JournalEntry> entries = {{3, 4096, 8192, 0}, {7, 0, 4096, 0}};
  std::string header = encodeJournalHeader(entries);
  std::vector<uint8_t> body(header.begin(), header.end());
  body.resize(body.size() + 8192 + 4096, 0xab);
  auto head = journalHeaderBytes(std::span(body).first(kJournalHeadBytes), body.size());
  ASSERT_TRUE(head);
  EXPECT_EQ(head.value(), header.size());
  auto decoded = decodeJournal(body, body.size(), kChunk);
  ASSERT_TRUE(decoded) << decoded.status().toString();
  ASSERT_EQ(decoded->size(), 2u);
  EXPECT_EQ((*decoded)[0].index, 3u);
  EXPECT_EQ((*decoded)[0].offset, 4096u);
  EXPECT_EQ((*decoded)[0].dataOffset, header.size());
  EXPECT_EQ((*decoded)[1].dataOffset, header.size() + 8192);

  EXPECT_EQ(decodeJournal(body, body.size() + 1, kChunk).status().code(), Code::kCorruption);  // short
  EXPECT_EQ(decodeJournal(body, body.size() - 1, kChunk).status().code(), Code::kCorruption);  // trailing
  EXPECT_EQ(decodeJournal(body, body.size(), 8192).status().code(), Code::kCorruption);        // past the chunk
  std::vector<uint8_t> bad = body;
  bad[0] = 'X';
  EXPECT_EQ(decodeJournal(bad, bad.size(), kChunk).status().code(), Code::kCorruption);
  EXPECT_EQ(parseJournalKey("00000000000000ff"), std::optional<uint64_t>(255));
  EXPECT_FALSE(parseJournalKey("0000000000000000"));
  EXPECT_FALSE(parseJournalKey("xyz"));
  EXPECT_EQ(journalKey("vol", 255), "volumes/vol/journal/00000000000000ff");
}

// A segment's header from the store: in one GET when the first read holds it, in two
// when it does not; a segment that is not one is refused.
TEST(JournalFormatTest, HeadersAreReadFromTheStoreInOneGetOrTwo) {
  TempDir dir;
  auto files = makeFileStore(dir.path() + "/store", true);
  ASSERT_TRUE(files) << files.status().toString();
  auto control = std::make_shared<testing::FaultyStore::Control>();
  testing::FaultyStore store(std::move(files).value(), control);
  std::vector<JournalEntry> entries;
  for (uint32_t i = 0; i < 40; ++i) entries.push_back({i, 4096, 4096, 0});
  std::string header = encodeJournalHeader(entries);
  std::vector<uint8_t> body(header.begin(), header.end());
  body.resize(body.size() + 40 * 4096, 0xcd);
  ASSERT_TRUE(store.put("seg", body));
  for (uint64_t firstRead : {uint64_t{0}, uint64_t{8}, uint64_t{100}, header.size(), kJournalFirstRead}) {
    const uint64_t gets = control->gets;
    auto got = readJournalHeader(store, "seg", body.size(), kChunk, firstRead);
    ASSERT_TRUE(got) << "first read " << firstRead << ": " << got.status().toString();
    EXPECT_EQ(control->gets - gets, firstRead >= header.size() ? 1u : 2u) << "first read " << firstRead;
    ASSERT_EQ(got->size(), 40u);
    EXPECT_EQ((*got)[39].index, 39u);
    EXPECT_EQ((*got)[39].dataOffset, header.size() + 39 * 4096);
  }
  // Its size as listed disagrees with the header: refused, naming the segment.
  auto bad = readJournalHeader(store, "seg", body.size() + 1, kChunk);
  EXPECT_EQ(bad.status().code(), Code::kCorruption);
  EXPECT_NE(bad.status().toString().find("seg"), std::string::npos) << bad.status().toString();
  std::vector<uint8_t> junk(64, 'x');
  ASSERT_TRUE(store.put("junk", junk));
  EXPECT_EQ(readJournalHeader(store, "junk", junk.size(), kChunk).status().code(), Code::kCorruption);
  EXPECT_EQ(readJournalHeader(store, "gone", 100, kChunk).status().code(), Code::kNotFound);
}

class JournalTest : public testing::StoreTest {
 protected:
  // Whole uploads only when asked (checkpoint, shutdown) or under pressure.
  std::unique_ptr<Engine> open(const std::string& state, uint64_t uploadBuffer, bool journal = true) {
    return testing::startEngine(options(state, uploadBuffer, journal));
  }
  EngineOptions options(const std::string& state, uint64_t uploadBuffer, bool journal = true) {
    EngineOptions o = testing::smallEngine(dir_ / state, stores_.url("s"), control_);
    o.creates = {{"vol", kSize, kChunk}};
    o.uploadBuffer = uploadBuffer;
    o.uploadDelayMs = 600000;
    o.uploadMaxAgeMs = 600000;
    o.recoveryIntervalSeconds = 0;
    o.shutdownTimeoutSeconds = 1;
    o.journal = journal;
    o.takeover = true;  // the lost gateway's lease is still live
    // A request may take about a third of the lease: a segment PUT to radosgw under a
    // loaded ctest run took over the 1.2 s a 3 s lease allows (once, in engine_s3_test).
    o.leaseTtlSeconds = 10;
    return o;
  }
  // Stops the engine with nothing reaching the store (a crash or a lost gateway, as far
  // as the store can tell): what is dirty stays dirty.
  void stopWithStoreDown(Engine& e) {
    control_->down = true;
    e.shutdown();
    control_->down = false;
  }
  static std::vector<uint8_t> readAll(Volume& v) {
    std::vector<uint8_t> out(v.size());
    EXPECT_TRUE(v.read(0, out));
    return out;
  }
  // Journals every dirty chunk that can be (the writers would at pressure).
  // Also waits out a segment the engine's own journal threads have on its way (they
  // start at half the upload buffer): journalSome skips its chunks meanwhile, and
  // returning then raced with it (seen once against radosgw).
  static void journalAll(Volume& v) {
    for (int i = 0; i < 100; ++i) {
      auto wrote = v.journalSome(4 << 20);
      ASSERT_TRUE(wrote) << wrote.status().toString();
      if (wrote.value() > 0) continue;
      uint64_t writes = v.stats().journalWrites;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      if (v.stats().journalWrites == writes) return;  // nothing else was on its way
    }
  }
  // A 4 KiB write into every chunk, at a different place in each; recorded in image.
  static void scatter(Volume& v, std::vector<uint8_t>& image, int seed) {
    for (uint64_t i = 0; i < v.chunkCount(); ++i) {
      uint64_t at = i * v.chunkSize() + ((i * 7 + seed) % 16) * 4096;
      auto data = randomBytes(4096, seed * 1000 + static_cast<int>(i));
      ASSERT_TRUE(v.write(at, data, false));
      std::copy(data.begin(), data.end(), image.begin() + static_cast<std::ptrdiff_t>(at));
    }
  }
  std::vector<std::string> segments() { return stores_.keys("s", journalPrefix("vol")); }
  // Random bytes over the first half of the volume, stored whole (a checkpoint); recorded
  // in image.
  static void storeHalf(Engine& e, std::vector<uint8_t>& image, int seed) {
    auto base = randomBytes(image.size() / 2, seed);
    ASSERT_TRUE(e.find("vol")->write(0, base, false));
    std::copy(base.begin(), base.end(), image.begin());
    ASSERT_TRUE(e.checkpoint("vol", std::chrono::seconds(30)));
  }
  // A gateway ("gw") on the over-cache volume below, its first half stored whole.
  std::unique_ptr<Engine> startHalfStored(std::vector<uint8_t>& image, int seed) {
    auto e = testing::startEngine(overCache("gw"));
    storeHalf(*e, image, seed);
    return e;
  }
  // A volume of 64 chunks of 1 MiB, four times the (smallest) cache.
  static constexpr uint64_t kBigChunk = 1 << 20;
  EngineOptions overCache(const std::string& state) {
    EngineOptions o = options(state, kRoomy);
    o.creates = {{"vol", kChunks * kBigChunk, kBigChunk}};
    o.cacheSize = 16 * kBigChunk;
    return o;
  }
  // The end of the over-cache tests (state "gw"): a snapshot, and a volume made from it;
  // a checkpoint (every chunk stored whole, no segment left); a fresh gateway on the
  // store. Each reads the image.
  void snapshotStoreAndAdopt(std::unique_ptr<Engine> e, const std::vector<uint8_t>& image) {
    auto v = e->find("vol");
    ASSERT_TRUE(e->snapshot("vol", "s1", std::chrono::seconds(30)));
    auto copy = e->createVolume(CreateSpec{"copy", 0, 0, "vol", "s1"});
    ASSERT_TRUE(copy) << copy.status().toString();
    EXPECT_TRUE(readAll(*copy.value()) == image) << "the snapshot missed chunks not cached";
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(60)));
    auto st = v->stats();
    EXPECT_EQ(st.dirtyChunks, 0u);
    EXPECT_EQ(st.journalOnlyChunks, 0u);
    EXPECT_EQ(st.patchedChunks, 0u);
    EXPECT_LE(e->stats().cachedBytes, overCache("gw").cacheSize);
    e->shutdown();
    EXPECT_TRUE(segments().empty()) << "segments outlived the whole uploads";
    e.reset();
    std::filesystem::remove_all(dir_ / "gw");
    auto fresh = testing::startEngine(overCache("fresh"));
    EXPECT_TRUE(readAll(*fresh->find("vol")) == image);
  }
};

// The gateway is lost with its changes only in the journal: a fresh gateway on the
// same store reads them, stores the chunks whole and drops the segments.
TEST_F(JournalTest, ALostGatewaysJournalIsAppliedByTheNextOne) {
  std::vector<uint8_t> image(kSize, 0);
  {
    auto a = open("a", kRoomy);
    auto v = a->find("vol");
    // A base in the store for half the chunks, then changes on top of every chunk.
    auto base = randomBytes(kSize / 2, 1);
    ASSERT_TRUE(v->write(0, base, false));
    std::copy(base.begin(), base.end(), image.begin());
    ASSERT_TRUE(a->checkpoint("vol", std::chrono::seconds(30)));
    scatter(*v, image, 2);
    scatter(*v, image, 3);
    journalAll(*v);
    auto st = v->stats();
    EXPECT_EQ(st.dirtyChunks, kChunks);
    EXPECT_EQ(st.journaledChunks, kChunks) << "every chunk changed in two pages is journaled";
    EXPECT_GE(st.journalWrites, 1u);
    EXPECT_FALSE(segments().empty());
    stopWithStoreDown(*a);  // lost: nothing more reaches the store
  }
  std::filesystem::remove_all(dir_ / "a");

  const uint64_t gets = control_->gets;
  auto b = open("b", kRoomy);
  // The chunks rebuilt together: a GET of each of the 32 objects, and one range GET of
  // a segment serves the entries of many chunks (not one GET per entry).
  EXPECT_LT(control_->gets - gets, kChunks) << "GETs to open the volume";
  auto v = b->find("vol");
  EXPECT_TRUE(readAll(*v) == image) << "the journal was not applied";
  EXPECT_TRUE(segments().empty()) << "applied segments stay in the store";
  EXPECT_EQ(v->stats().dirtyChunks, 0u);
  b->shutdown();
  b.reset();
  // And what b stored is the volume: a third gateway reads the same.
  std::filesystem::remove_all(dir_ / "b");
  auto c = open("c", kRoomy);
  EXPECT_TRUE(readAll(*c->find("vol")) == image);
}

// An adoption that fails halfway through applying the journal (the store refuses
// PUTs) is refused whole and leaves nothing behind that a second try misreads: that
// try applies every segment and reads the lost gateway's changes.
TEST_F(JournalTest, AnAdoptionThatFailsHalfwayIsRetriedWhole) {
  std::vector<uint8_t> image(kSize, 0);
  {
    auto a = open("a", kRoomy);
    auto v = a->find("vol");
    auto base = randomBytes(kSize, 5);
    ASSERT_TRUE(v->write(0, base, false));
    std::copy(base.begin(), base.end(), image.begin());
    ASSERT_TRUE(a->checkpoint("vol", std::chrono::seconds(30)));
    scatter(*v, image, 6);
    journalAll(*v);
    EXPECT_EQ(v->stats().journaledChunks, kChunks);
    stopWithStoreDown(*a);  // lost
  }
  control_->putBudget = 20;  // the leases, then a few chunks of the journal
  auto failed = Engine::open(options("b", kRoomy));
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.status().toString().find("journal"), std::string::npos) << failed.status().toString();
  EXPECT_FALSE(segments().empty());
  control_->putBudget = -1;

  auto b = open("b", kRoomy);
  auto v = b->find("vol");
  EXPECT_TRUE(readAll(*v) == image);
  EXPECT_EQ(v->stats().dirtyChunks, 0u);
  EXPECT_TRUE(segments().empty());
}

// Under pressure (a small upload buffer) the journal takes the changes; a restart
// keeps the journaled chunks out of the buffer, and their whole uploads void and
// delete the segments.
TEST_F(JournalTest, PressureGoesToTheJournalAndWholeUploadsDeleteIt) {
  std::vector<uint8_t> image(kSize, 0);
  {
    auto e = open("gw", 8 * kChunk);
    auto v = e->find("vol");
    scatter(*v, image, 4);
    journalAll(*v);
    EXPECT_GT(v->stats().journaledChunks, 0u);
    EXPECT_FALSE(segments().empty());
    stopWithStoreDown(*e);  // a crash, as far as the store can tell
  }
  auto e = open("gw", 8 * kChunk);
  auto v = e->find("vol");
  auto st = v->stats();
  EXPECT_GT(st.journaledChunks, 0u) << "journaled chunks came back counted as dirty";
  EXPECT_GT(st.journalSegments, 0u);
  EXPECT_LE(e->stats().dirtyBytes, 8 * kChunk);
  EXPECT_TRUE(readAll(*v) == image);
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  EXPECT_EQ(e->stats().dirtyBytes, 0u);
  EXPECT_EQ(e->stats().journaledBytes, 0u);
  e->shutdown();  // deletes what the uploads superseded
  EXPECT_TRUE(segments().empty()) << "segments outlived the whole uploads";
}

// Which pages of a cached chunk changed is in its row: a gateway stopped with such
// chunks (the store down, so nothing went up) comes back counting those pages in the
// upload buffer, not whole chunks, and the journal can take them. (Counted whole, 64
// chunks of 1 MiB would be 16 times this 4 MiB buffer: writers would wait for 64 whole
// uploads after every restart.)
TEST_F(JournalTest, ARestartCountsOnlyTheChangedPagesOfCachedChunks) {
  std::vector<uint8_t> image(kSize, 0);
  {
    auto e = open("gw", kRoomy);
    auto v = e->find("vol");
    scatter(*v, image, 9);
    EXPECT_EQ(e->stats().dirtyBytes, kChunks * 4096);
    EXPECT_EQ(v->stats().journaledChunks, 0u);
    stopWithStoreDown(*e);
  }
  auto e = open("gw", kRoomy);
  auto v = e->find("vol");
  EXPECT_EQ(e->stats().dirtyBytes, kChunks * 4096) << "the changed pages of cached chunks were not kept";
  EXPECT_TRUE(readAll(*v) == image);
  journalAll(*v);
  EXPECT_EQ(e->stats().dirtyBytes, 0u);
  EXPECT_EQ(v->stats().journaledChunks, kChunks);
  // Still in the cache until stored whole (it may hold writes its row did not have).
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  e->shutdown();
  auto fresh = open("fresh", kRoomy);
  EXPECT_TRUE(readAll(*fresh->find("vol")) == image);
}

// After a clean stop the rows are exact: a dirty cached chunk's pages go to the journal
// and it may leave the cache. After a crash its cache may hold writes its row lacks: it
// stays cached until stored whole, and still after a clean stop in between (the mark
// is in its row).
TEST_F(JournalTest, OnlyAStartAfterACrashKeepsChangedChunksCachedUntilStoredWhole) {
  std::vector<uint8_t> image(kSize, 0);
  {
    auto e = open("gw", kRoomy);
    scatter(*e->find("vol"), image, 11);
    stopWithStoreDown(*e);
  }
  {
    auto e = open("gw", kRoomy);
    auto v = e->find("vol");
    EXPECT_EQ(v->stats().dirtyChunks, kChunks);
    EXPECT_EQ(v->stats().cacheOnlyChunks, 0u) << "a clean stop was taken for a crash";
    journalAll(*v);
    EXPECT_EQ(e->stats().journaledBytes, kChunks * kChunk) << "journaled chunks are not evictable";
    scatter(*v, image, 12);  // plain dirty again, with the new pages
    stopWithStoreDown(*e);
  }
  ASSERT_TRUE(testing::markCrashed(dir_ / "gw"));
  {
    auto e = open("gw", kRoomy);
    auto v = e->find("vol");
    EXPECT_EQ(v->stats().cacheOnlyChunks, kChunks) << "a crash's chunks were taken as exact";
    scatter(*v, image, 13);           // their rows written again
    stopWithStoreDown(*e);            // cleanly, before any of them went up whole
  }
  auto e = open("gw", kRoomy);
  auto v = e->find("vol");
  EXPECT_EQ(v->stats().cacheOnlyChunks, kChunks) << "a clean stop forgot what the crash before it left";
  journalAll(*v);
  EXPECT_EQ(v->stats().journaledChunks, kChunks);
  EXPECT_EQ(e->stats().journaledBytes, 0u) << "chunks a crash left became evictable";
  EXPECT_TRUE(readAll(*v) == image);
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  EXPECT_EQ(v->stats().cacheOnlyChunks, 0u);
  e->shutdown();
  auto fresh = open("fresh", kRoomy);
  EXPECT_TRUE(readAll(*fresh->find("vol")) == image);
}

// A start queues the dirty chunks it finds for upload with their upload-delay and
// upload-max-age counting from the start: a journaled one waits for upload-max-age, as
// it would have before the stop, instead of going up whole at once next to the writers.
TEST_F(JournalTest, DirtyChunksFoundAtAStartWaitTheirUploadDelayFromThere) {
  std::vector<uint8_t> image(kSize, 0);
  constexpr uint64_t kPlain = kChunks / 2;  // chunks 0..31 written again after the journal took them
  {
    auto e = open("gw", kRoomy);
    auto v = e->find("vol");
    scatter(*v, image, 14);
    journalAll(*v);
    for (uint64_t i = 0; i < kPlain; ++i) {
      auto data = randomBytes(4096, 15000 + static_cast<int>(i));
      ASSERT_TRUE(v->write(i * kChunk + 20 * 4096, data, false));
      std::copy(data.begin(), data.end(), image.begin() + static_cast<std::ptrdiff_t>(i * kChunk + 20 * 4096));
    }
    EXPECT_EQ(v->stats().journaledChunks, kChunks - kPlain);
    stopWithStoreDown(*e);  // they stay dirty
  }
  EngineOptions o = options("gw", kRoomy);
  o.uploadDelayMs = 200;  // upload-max-age stays 10 minutes
  auto e = testing::startEngine(o);
  auto v = e->find("vol");
  EXPECT_TRUE(testing::waitUntil([&] { return v->stats().dirtyChunks <= kChunks - kPlain; }))
      << "the chunks not journaled, queued at the start, never went up";
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(v->stats().dirtyChunks, kChunks - kPlain) << "a start stored its journaled chunks whole at once";
  EXPECT_EQ(v->stats().journaledChunks, kChunks - kPlain);
  EXPECT_TRUE(readAll(*v) == image);
}

// With the journal on, the upload buffer holds changed pages, not whole chunks: a
// 4 KiB write into each of 64 chunks takes 256 KiB of it, not 4 MiB, and rewriting
// the same pages adds nothing. Journaling and uploading give it all back.
TEST_F(JournalTest, TheUploadBufferCountsChangedPages) {
  auto e = open("gw", 16 * kChunk);  // 1 MiB: the journal starts at 512 KiB
  auto v = e->find("vol");
  std::vector<uint8_t> image(kSize, 0);
  scatter(*v, image, 6);
  EXPECT_EQ(e->stats().dirtyBytes, kChunks * 4096);
  scatter(*v, image, 6);  // the same pages again
  EXPECT_EQ(e->stats().dirtyBytes, kChunks * 4096);
  auto whole = randomBytes(kChunk, 7);
  ASSERT_TRUE(v->write(0, whole, false));  // chunk 0 changed throughout
  std::copy(whole.begin(), whole.end(), image.begin());
  EXPECT_EQ(e->stats().dirtyBytes, (kChunks - 1) * 4096 + kChunk);
  journalAll(*v);
  EXPECT_EQ(e->stats().dirtyBytes, kChunk) << "only chunk 0 is left to a whole upload";
  EXPECT_EQ(e->stats().journaledBytes, (kChunks - 1) * kChunk);
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  EXPECT_EQ(e->stats().dirtyBytes, 0u);
  EXPECT_EQ(e->stats().journaledBytes, 0u);
  EXPECT_TRUE(readAll(*v) == image);
}

// A journaled chunk zeroed whole, on a volume with nothing stored for it: the zeros
// need a tombstone, or an adopting gateway would apply the journal to nothing.
TEST_F(JournalTest, ZerosOverJournaledChangesAreStored) {
  std::vector<uint8_t> image(kSize, 0);
  {
    auto a = open("a", kRoomy);
    auto v = a->find("vol");
    scatter(*v, image, 5);
    journalAll(*v);
    ASSERT_EQ(v->stats().journaledChunks, kChunks);
    ASSERT_TRUE(v->zero(0, 4 * kChunk, false));
    std::fill(image.begin(), image.begin() + 4 * kChunk, 0);
    ASSERT_TRUE(a->checkpoint("vol", std::chrono::seconds(30)));
    a->shutdown();
  }
  std::filesystem::remove_all(dir_ / "a");
  auto b = open("b", kRoomy);
  EXPECT_TRUE(readAll(*b->find("vol")) == image);
}

// A segment PUT that timed out but landed: zeros written over its pages afterwards
// must win when another gateway adopts the volume.
TEST_F(JournalTest, ASegmentThatFailedButLandedCannotBringBackZeroedData) {
  {
    auto e = open("gw", kRoomy);
    auto v = e->find("vol");
    auto data = randomBytes(4096, 9);
    ASSERT_TRUE(v->write(kChunk + 8192, data, false));  // nothing stored for chunk 1 yet
    control_->putsLandButFail = true;
    EXPECT_FALSE(v->journalSome(4 << 20));
    control_->putsLandButFail = false;
    ASSERT_FALSE(segments().empty()) << "the failed PUT was meant to land";
    ASSERT_TRUE(v->zero(kChunk, kChunk, false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    e->shutdown();
  }
  const std::vector<uint8_t> zeros(kSize, 0);
  std::filesystem::remove_all(dir_ / "gw");
  auto b = open("b", kRoomy);
  EXPECT_TRUE(readAll(*b->find("vol")) == zeros) << "adopting applied the landed segment";
  EXPECT_TRUE(segments().empty());
}

// Segments are applied to clean chunks only when a gateway adopts the volume. Not
// when creating it afresh (a deleted volume's of the same name, landed late), nor on
// a restart (an older owner's, written after a takeover): there they are deleted.
TEST_F(JournalTest, SegmentsAreAppliedOnlyWhenAdopting) {
  auto forge = [&](uint64_t generation, uint64_t index, int seed) {
    std::string header = encodeJournalHeader({{index, 0, 4096, 0}});
    std::vector<uint8_t> body(header.begin(), header.end());
    auto data = randomBytes(4096, seed);
    body.insert(body.end(), data.begin(), data.end());
    ASSERT_TRUE(stores_.client("s").put(journalKey("vol", generation), body));
  };
  forge(uint64_t{1} << 60, 2, 10);  // before the volume exists
  std::vector<uint8_t> image(kSize, 0);
  {
    auto e = open("gw", kRoomy);
    auto v = e->find("vol");
    EXPECT_TRUE(readAll(*v) == image) << "a fresh volume took a segment it never wrote";
    EXPECT_TRUE(segments().empty());
    auto data = randomBytes(kChunk, 11);
    ASSERT_TRUE(v->write(kChunk, data, false));
    std::copy(data.begin(), data.end(), image.begin() + kChunk);
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    e->shutdown();
  }
  forge(uint64_t{1} << 61, 1, 12);  // above every generation this gateway wrote
  auto e = open("gw", kRoomy);
  EXPECT_TRUE(readAll(*e->find("vol")) == image) << "a restart took a segment it never wrote";
  EXPECT_TRUE(segments().empty());
}

// A segment whose entry does not start on a 4 KiB page (FORMAT.md) stops the start with
// an error naming it, rather than being applied or rebuilt from page by page.
TEST_F(JournalTest, ASegmentEntryOffItsPagesIsRefused) {
  open("gw", kRoomy)->shutdown();  // the volume exists (a create deletes what was there)
  std::string header = encodeJournalHeader({{3, 100, 4096, 0}});
  std::vector<uint8_t> body(header.begin(), header.end());
  body.resize(body.size() + 4096, 7);
  ASSERT_TRUE(stores_.client("s").put(journalKey("vol", uint64_t{1} << 60), body));
  auto failed = Engine::open(options("gw", kRoomy));
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.status().toString().find("is not on 4 KiB pages"), std::string::npos) << failed.status().toString();
}

// Adopting replaces a chunk's object with one that has the journal applied; the old
// object stays while a snapshot references it.
TEST_F(JournalTest, AdoptingKeepsTheObjectsOfSnapshots) {
  SnapshotManifest m;
  {
    auto a = open("a", kRoomy);
    auto v = a->find("vol");
    ASSERT_TRUE(v->write(0, randomBytes(kChunk, 13), false));
    ASSERT_TRUE(a->checkpoint("vol", std::chrono::seconds(30)));
    auto snap = a->snapshot("vol", "s1", std::chrono::seconds(30));
    ASSERT_TRUE(snap) << snap.status().toString();
    m = snap.value();
    ASSERT_EQ(m.chunks.size(), 1u);
    ASSERT_TRUE(v->write(4096, randomBytes(4096, 14), false));
    journalAll(*v);
    ASSERT_EQ(v->stats().journaledChunks, 1u);
    stopWithStoreDown(*a);  // lost
  }
  std::filesystem::remove_all(dir_ / "a");
  auto b = open("b", kRoomy);
  EXPECT_TRUE(segments().empty());
  EXPECT_TRUE(stores_.exists("s", chunkKey("vol", 0, m.chunks[0].generation)))
      << "the snapshot's object was deleted as superseded";
}

// A chunk zeroed while its upload is in flight, then written in one page: the store
// gets the old content, so that page alone must not go to the journal (a gateway
// adopting the volume would apply it over the old content instead of zeros). The
// adopter may read the old content (the lost gateway stored nothing newer) or the
// new, never a mix.
TEST_F(JournalTest, ZerosDuringAnUploadThenAPageAreNotJournaledOverTheOldContent) {
  std::vector<uint8_t> image(kSize, 0);
  const auto old = randomBytes(kChunk, 15);
  {
    auto a = open("a", kRoomy);
    auto v = a->find("vol");
    ASSERT_TRUE(v->write(3 * kChunk, old, false));  // nothing stored yet
    control_->latencyMs = 400;
    auto upload = std::async(std::launch::async, [&] {
      std::vector<uint8_t> buf(kChunk);
      return v->uploadChunk(3, buf);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(150));  // copied, PUT on its way
    ASSERT_TRUE(v->zero(3 * kChunk, kChunk, false));
    auto page = randomBytes(4096, 16);
    ASSERT_TRUE(v->write(3 * kChunk + 8192, page, false));
    std::copy(page.begin(), page.end(), image.begin() + 3 * kChunk + 8192);
    ASSERT_TRUE(upload.get());
    control_->latencyMs = 0;
    journalAll(*v);
    stopWithStoreDown(*a);  // lost
  }
  std::filesystem::remove_all(dir_ / "a");
  auto b = open("b", kRoomy);
  auto back = readAll(*b->find("vol"));
  std::vector<uint8_t> before(kSize, 0);
  std::copy(old.begin(), old.end(), before.begin() + 3 * kChunk);
  EXPECT_TRUE(back == image || back == before) << "the page was applied over the old content";
}

// A volume four times the size of the cache, a page written into every chunk: the
// journal takes the changes and the cache evicts the journaled chunks (no chunk goes
// up whole for it). Reads and writes rebuild them from their objects and segments,
// across a restart and a snapshot, until their whole uploads void the segments.
TEST_F(JournalTest, JournaledChunksLeaveASmallCacheAndAreRebuilt) {
  EngineOptions small = overCache("gw");
  std::vector<uint8_t> image(kChunks * kBigChunk, 0);
  {
    auto e = startHalfStored(image, 20);
    auto v = e->find("vol");
    const uint64_t uploads = v->stats().uploads;
    scatter(*v, image, 21);  // waits for room in the cache: the journal makes it
    auto st = v->stats();
    // A few may: the uploader can see the journal's "found nothing" from its pass before
    // the latest writes (a known race, volume-engine.md), and hurry meanwhile.
    EXPECT_LE(st.uploads - uploads, kChunks / 16) << "chunks went up whole to make room";
    EXPECT_GE(st.dirtyChunks, kChunks - kChunks / 16);
    // Out of the cache: evicted into the journal, or patched (written a page, which
    // the journal takes next) once the cache is full.
    EXPECT_GT(st.journalOnlyChunks + st.patchedChunks, kChunks / 2) << "journaled chunks stayed in the cache";
    EXPECT_LE(e->stats().cachedBytes, small.cacheSize);
    EXPECT_TRUE(readAll(*v) == image) << "an evicted chunk read back wrong";
    scatter(*v, image, 22);  // writes into evicted chunks
    EXPECT_TRUE(readAll(*v) == image);
    journalAll(*v);
    // (How many are in the journal only now depends on what the uploader hurried
    // meanwhile: the known race above. The reads after the restart check them.)
    stopWithStoreDown(*e);  // a crash, as far as the store can tell
  }
  auto e = testing::startEngine(small);
  auto v = e->find("vol");
  EXPECT_TRUE(readAll(*v) == image) << "an evicted chunk read back wrong after a restart";
  scatter(*v, image, 23);
  snapshotStoreAndAdopt(std::move(e), image);
}

// A small read of a chunk evicted into the journal, or patched, takes only its pages:
// a range GET of the object or of the newest segment holding each, a patch's pages
// from the cache file; the chunk stays out of the cache. (Rebuilt whole, each such
// read downloaded the chunk's object and a range of every segment with live pages of
// it, and cached it.)
TEST_F(JournalTest, SmallReadsOfAnEvictedChunkReadOnlyTheirPages) {
  std::vector<uint8_t> image(kChunks * kBigChunk, 0);
  auto e = startHalfStored(image, 40);
  auto v = e->find("vol");
  scatter(*v, image, 41);
  scatter(*v, image, 42);  // patches chunks evicted after the first
  auto before = v->stats();
  const uint64_t outside = before.journalOnlyChunks + before.patchedChunks;
  ASSERT_GT(outside, kChunks / 2) << "the journaled chunks stayed in the cache";
  // In each chunk: the page from the last scatter (patched, or in a segment); a page
  // not written since the base (the object, or zeros); and 4 KiB across the first and
  // the page after it. In an order no reader would call sequential.
  for (uint64_t k = 0; k < kChunks; ++k) {
    const uint64_t i = k * 37 % kChunks;
    const uint64_t page = (i * 7 + 42) % 16;
    for (uint64_t at : {page * 4096, uint64_t{200 * 4096}, page * 4096 + 2048}) {
      at += i * kBigChunk;
      std::vector<uint8_t> got(4096);
      ASSERT_TRUE(v->read(at, got));
      ASSERT_TRUE(std::equal(got.begin(), got.end(), image.begin() + static_cast<std::ptrdiff_t>(at)))
          << "chunk " << i << " at " << at % kBigChunk;
    }
  }
  auto after = v->stats();
  // At most their pages: 4 + 4 + 8 KiB a chunk, and three segment ranges.
  EXPECT_LE(after.downloadedBytes - before.downloadedBytes, kChunks * 16 * 1024)
      << "reads fetched more than their pages";
  EXPECT_LE(after.journalReads - before.journalReads, kChunks * 3);
  EXPECT_GE(after.journalOnlyChunks + after.patchedChunks, outside) << "small reads cached chunks whole";
  EXPECT_TRUE(readAll(*v) == image);
}

// A chunk whose changes lie in many segments costs a GET per segment to rebuild whole,
// where a small read costs one: it is read in pages for as many reads as that, then
// rebuilt whole.
TEST_F(JournalTest, AChunkInManySegmentsIsReadInPagesUntilItsRebuildPays) {
  std::vector<uint8_t> image(kChunks * kBigChunk, 0);
  auto e = startHalfStored(image, 60);
  auto v = e->find("vol");
  for (int round = 0; round < 8; ++round) {  // a page of each chunk in each of 8+ segments
    scatter(*v, image, 61 + round);
    journalAll(*v);
  }
  const uint64_t segmentCount = segments().size();
  ASSERT_GE(segmentCount, 8u);
  auto before = v->stats();
  const uint64_t outside = before.journalOnlyChunks + before.patchedChunks;
  ASSERT_GT(outside, kChunks / 2) << "the journaled chunks stayed in the cache";
  // Rounds of a 4 KiB read in each chunk, in an order no reader would call sequential.
  auto readRound = [&](int round) {
    for (uint64_t k = 0; k < kChunks; ++k) {
      const uint64_t i = k * 37 % kChunks;
      const uint64_t at = i * kBigChunk + ((i + static_cast<uint64_t>(round) * 5) % 256) * 4096;
      std::vector<uint8_t> got(4096);
      ASSERT_TRUE(v->read(at, got));
      ASSERT_TRUE(std::equal(got.begin(), got.end(), image.begin() + static_cast<std::ptrdiff_t>(at)))
          << "round " << round << " chunk " << i;
    }
  };
  // Reads from the store that took the whole chunk (a rebuild, or a fetch of a chunk
  // only in the store) since `before`.
  auto wholeReads = [&] {
    auto st = v->stats();
    return (st.readMisses - before.readMisses) - (st.rangeReads - before.rangeReads);
  };
  // Past the three reads a chunk only in the store gets in pages: still one GET each.
  // Whole: those only in the store (the cache crowded, and uploads hurried), their
  // fourth read; and a few stored whole late in the scatters, their pieces then in
  // only a few segments.
  for (int round = 0; round < 6; ++round) readRound(round);
  EXPECT_LE(wholeReads(), (kChunks - outside) + outside / 4) << "chunks were rebuilt whole early";
  // A whole rebuild takes at most a GET per segment and one for the object: by then
  // every chunk outside the cache has been read whole at least once.
  for (int round = 6; round < static_cast<int>(segmentCount) + 2; ++round) readRound(round);
  EXPECT_GE(wholeReads(), outside) << "chunks were read in pages past what a whole rebuild costs";
  EXPECT_TRUE(readAll(*v) == image);
}

// A chunk read in pages from the journal, then stored whole: its next small reads are
// range GETs of its new object again, as for any chunk only in the store, not a whole
// fetch because of the page reads before.
TEST_F(JournalTest, AChunkStoredWholeAfterPageReadsIsReadInRangesAgain) {
  std::vector<uint8_t> image(kChunks * kBigChunk, 0);
  auto e = startHalfStored(image, 80);
  auto v = e->find("vol");
  scatter(*v, image, 81);
  scatter(*v, image, 82);
  const uint64_t outside = v->stats().journalOnlyChunks + v->stats().patchedChunks;
  ASSERT_GT(outside, kChunks / 2) << "the journaled chunks stayed in the cache";
  // Three 4 KiB reads of each even chunk, at pages no writer touched: a chunk in two
  // segments at most is read in pages for three. Only even chunks, so that no read
  // follows one of the chunk before (a sequential reader, whose chunks are fetched
  // whole), whatever the order.
  auto readRound = [&](uint64_t page) {
    for (uint64_t k = 0; k < kChunks / 2; ++k) {
      const uint64_t at = 2 * (k * 13 % (kChunks / 2)) * kBigChunk + page * 4096;
      std::vector<uint8_t> got(4096);
      ASSERT_TRUE(v->read(at, got));
      ASSERT_TRUE(std::equal(got.begin(), got.end(), image.begin() + static_cast<std::ptrdiff_t>(at))) << at;
    }
  };
  for (uint64_t page : {100, 150, 200}) readRound(page);
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(60)));
  auto stored = v->stats();
  ASSERT_EQ(stored.journalOnlyChunks + stored.patchedChunks, 0u);
  readRound(250);
  // The even ones of those (about half) read in ranges again. (An even chunk stored
  // whole during the scatters was read in ranges three times already: fetched whole.)
  const uint64_t ranges = v->stats().rangeReads - stored.rangeReads;
  EXPECT_GE(ranges, outside / 4) << "chunks read in pages before were fetched whole on their first small read";
  EXPECT_TRUE(readAll(*v) == image);
}

// A volume made from a snapshot, written and journaled before it is hydrated: a
// snapshot of it copies the rest first, and its chunks with changes in the journal
// (which hydration leaves to their upload) go up whole for it at once, not at
// upload-max-age (ten minutes here).
TEST_F(JournalTest, ASnapshotOfAVolumeBeingHydratedStoresItsJournaledChunksAtOnce) {
  EngineOptions o = options("gw", kRoomy);
  o.hydrateThreads = 0;
  auto e = testing::startEngine(o);
  std::vector<uint8_t> image(kSize, 0);
  storeHalf(*e, image, 90);
  ASSERT_TRUE(e->snapshot("vol", "s1", std::chrono::seconds(30)));
  auto made = e->createVolume(CreateSpec{"copy", 0, 0, "vol", "s1", ""});
  ASSERT_TRUE(made) << made.status().toString();
  auto c = made.value();
  scatter(*c, image, 91);
  journalAll(*c);
  ASSERT_GT(c->stats().journaledChunks, 0u);
  ASSERT_GT(c->stats().hydrationLeft, 0u);
  auto snap = e->snapshot("copy", "mid", std::chrono::seconds(20));
  ASSERT_TRUE(snap) << snap.status().toString();
  EXPECT_EQ(c->stats().hydrationLeft, 0u);
  EXPECT_TRUE(readAll(*c) == image);
}

// Once the cache is full, writes of whole pages to chunks it does not hold land in the
// cache file as they are (patched), without reading those chunks from the store; reads,
// a write of part of a page, zeros, a restart, the journal, a snapshot and whole
// uploads all see the chunk as its object, its journal pieces, then those pages.
TEST_F(JournalTest, WritesOfWholePagesPatchChunksWithoutReadingThem) {
  EngineOptions small = overCache("gw");
  std::vector<uint8_t> image = randomBytes(kChunks * kBigChunk, 30);
  auto put = [&](Volume& v, uint64_t at, std::vector<uint8_t> data) {
    ASSERT_TRUE(v.write(at, data, false));
    std::copy(data.begin(), data.end(), image.begin() + static_cast<std::ptrdiff_t>(at));
  };
  {
    auto e = testing::startEngine(small);
    auto v = e->find("vol");
    ASSERT_TRUE(v->write(0, image, false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));  // stored
    // A page into each chunk: those the cache holds are written there, the rest patched.
    const uint64_t downloaded = v->stats().downloadedBytes;
    scatter(*v, image, 31);
    scatter(*v, image, 32);                                      // another page of each, or the same
    put(*v, 40 * kBigChunk + 8192, randomBytes(12288, 33));      // three pages
    put(*v, kChunks * kBigChunk - 4096, randomBytes(4096, 34));  // the volume's last page
    auto st = v->stats();
    EXPECT_EQ(st.downloadedBytes, downloaded) << "a write of whole pages read its chunk from the store";
    // Patched, or in the journal only once it took their pages (it runs meanwhile: the
    // chunks written in the cache crowd it).
    EXPECT_GT(st.patchedChunks + st.journalOnlyChunks, kChunks / 2);
    EXPECT_LE(e->stats().cachedBytes, small.cacheSize);
    EXPECT_TRUE(readAll(*v) == image) << "a patched chunk read back wrong";
    // Part of a page (the chunk is rebuilt first), zeros over pages, a whole chunk zeroed.
    put(*v, 50 * kBigChunk + 3 * 4096 + 7, randomBytes(100, 35));
    ASSERT_TRUE(v->zero(51 * kBigChunk + 4096, 8192, false));
    std::fill_n(image.begin() + 51 * kBigChunk + 4096, 8192, uint8_t{0});
    ASSERT_TRUE(v->zero(52 * kBigChunk, kBigChunk, false));
    std::fill_n(image.begin() + 52 * kBigChunk, kBigChunk, uint8_t{0});
    EXPECT_TRUE(readAll(*v) == image);
    // Everything into segments, then a page into each chunk again: patched over their
    // pieces (nothing presses the journal to take them) when the gateway crashes.
    journalAll(*v);
    scatter(*v, image, 36);
    EXPECT_GT(v->stats().patchedChunks + v->stats().journalOnlyChunks, kChunks / 2);
    ASSERT_TRUE(v->flush());
    stopWithStoreDown(*e);  // a crash, as far as the store can tell
  }
  auto e = testing::startEngine(small);
  auto v = e->find("vol");
  // (Their pages are in the cache file only, as their rows say; the restart also starts
  // storing them whole.)
  EXPECT_TRUE(readAll(*v) == image) << "a patched chunk read back wrong after a restart";
  // Done storing them whole first: the pages below would go with them.
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(60)));
  scatter(*v, image, 38);
  journalAll(*v);  // their pages into segments: in the journal only
  EXPECT_GT(v->stats().journalOnlyChunks, 0u);
  EXPECT_TRUE(readAll(*v) == image);
  scatter(*v, image, 37);  // patched again, over their pieces
  snapshotStoreAndAdopt(std::move(e), image);
}

// A chunk rebuilt from the journal reads only the pieces no newer one (or patched
// page) overwrites, and not its object once its pieces cover every page.
TEST_F(JournalTest, ARebuildReadsOnlyWhatNothingNewerOverwrites) {
  std::vector<uint8_t> image = randomBytes(kChunks * kBigChunk, 40);
  auto e = testing::startEngine(overCache("gw"));
  auto v = e->find("vol");
  auto put = [&](uint64_t at, std::vector<uint8_t> data) {
    ASSERT_TRUE(v->write(at, data, false));
    std::copy(data.begin(), data.end(), image.begin() + static_cast<std::ptrdiff_t>(at));
  };
  ASSERT_TRUE(v->write(0, image, false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));  // stored, most not cached
  // Every page of the first chunks, in two writes each (patched, or written in the
  // cache); and every page but the first of the next.
  constexpr uint64_t kWhole = 4;
  for (uint64_t i = 0; i < kWhole; ++i) {
    put(i * kBigChunk, randomBytes(kBigChunk / 2, 41 + static_cast<int>(i)));
    put(i * kBigChunk + kBigChunk / 2, randomBytes(kBigChunk / 2, 51 + static_cast<int>(i)));
  }
  put(kWhole * kBigChunk + 4096, randomBytes(kBigChunk / 2 - 4096, 45));
  put(kWhole * kBigChunk + kBigChunk / 2, randomBytes(kBigChunk / 2, 55));
  journalAll(*v);
  uint64_t rebuilt = 0;
  for (uint64_t i = 0; i <= kWhole; ++i) {
    auto before = v->stats();
    std::vector<uint8_t> chunk(kBigChunk);
    ASSERT_TRUE(v->read(i * kBigChunk, chunk));
    EXPECT_TRUE(std::equal(chunk.begin(), chunk.end(), image.begin() + static_cast<std::ptrdiff_t>(i * kBigChunk)));
    auto after = v->stats();
    if (after.journalReads > before.journalReads) ++rebuilt;
    // (The last one is patched, then in the journal only: nothing hurries its upload.)
    if (i == kWhole) {
      EXPECT_GT(after.journalReads, before.journalReads) << "chunk " << i << " was not rebuilt";
    }
    EXPECT_LE(after.downloadedBytes - before.downloadedBytes, kBigChunk)
        << "chunk " << i << ": its object was read whole";
  }
  ASSERT_GT(rebuilt, 0u) << "no chunk was rebuilt from the journal";
  // The same page of every chunk three times over, each time into a segment.
  for (int round = 0; round < 3; ++round) {
    for (uint64_t i = 0; i < kChunks; ++i) put(i * kBigChunk, randomBytes(4096, 100 * round + static_cast<int>(i)));
    journalAll(*v);
  }
  auto st = v->stats();
  ASSERT_GT(st.journalOnlyChunks, kChunks / 2);
  EXPECT_TRUE(readAll(*v) == image);
  // One range GET of a segment for each chunk rebuilt (its newest page), not three;
  // two for the first chunks if evicted meanwhile (their other pages are older).
  EXPECT_LE(v->stats().journalReads - st.journalReads, st.journalOnlyChunks + st.patchedChunks + kWhole);
  snapshotStoreAndAdopt(std::move(e), image);
}

// Storing chunks whole from the journal takes neighbours together: a segment holding
// pieces of several is read once for all of them, not once per chunk. Failed PUTs of
// such an upload lose none of them.
TEST_F(JournalTest, NeighboursStoredFromTheJournalShareTheirSegmentReads) {
  std::vector<uint8_t> image = randomBytes(kChunks * kBigChunk, 60);
  auto e = testing::startEngine(overCache("gw"));
  auto v = e->find("vol");
  ASSERT_TRUE(v->write(0, image, false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));  // stored, most not cached
  // Three pages of every chunk, each round into its own segments.
  for (int round = 0; round < 3; ++round) {
    scatter(*v, image, 61 + round);
    journalAll(*v);
  }
  // A segment lays out its chunks in index order: neighbours' pieces lie together.
  for (const std::string& key : segments()) {
    auto body = stores_.client("s").getAll(key);
    ASSERT_TRUE(body) << body.status().toString();
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(body.value().data()), body.value().size());
    auto entries = decodeJournal(bytes, bytes.size(), kBigChunk);
    ASSERT_TRUE(entries) << entries.status().toString();
    for (size_t i = 1; i < entries.value().size(); ++i) {
      EXPECT_LE(entries.value()[i - 1].index, entries.value()[i].index) << key;
    }
  }
  auto st = v->stats();
  ASSERT_GT(st.journalOnlyChunks, kChunks / 2);
  // The first try fails at chunk PUTs (which land: a timeout after the store took it).
  control_->chunkPutsLandButFail = true;
  EXPECT_FALSE(e->checkpoint("vol", std::chrono::seconds(2)));
  control_->chunkPutsLandButFail = false;
  auto failed = v->stats();
  EXPECT_GT(failed.uploadErrors, st.uploadErrors);
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(60)));
  auto done = v->stats();
  EXPECT_EQ(done.dirtyChunks, 0u);
  // Each chunk's pages are in three segments: rebuilt one by one, that is three GETs a
  // chunk. Together, a few per group of neighbours (a group is 32 chunks of 1 MiB).
  const uint64_t chunks = st.journalOnlyChunks + st.patchedChunks;
  EXPECT_LE(done.journalReads - failed.journalReads, chunks) << "neighbours read their segments one by one";
  EXPECT_TRUE(readAll(*v) == image);
  snapshotStoreAndAdopt(std::move(e), image);
}

// A chunk that cannot be rebuilt (its object gone) fails its upload with neighbours:
// they then go alone and are stored; it stays dirty, with a clear error.
TEST_F(JournalTest, AChunkThatCannotBeRebuiltHoldsUpNoNeighbour) {
  std::vector<uint8_t> image = randomBytes(kChunks * kBigChunk, 70);
  EngineOptions o = overCache("gw");
  o.uploadThreads = 1;  // no other upload leaves the lost chunks out of a group
  auto e = testing::startEngine(o);
  auto v = e->find("vol");
  ASSERT_TRUE(v->write(0, image, false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  for (int round = 0; round < 2; ++round) {
    scatter(*v, image, 71 + round);
    journalAll(*v);
  }
  auto st = v->stats();
  ASSERT_GT(st.journalOnlyChunks, kChunks / 2);
  // The objects of four chunks in both groups of 32, which their rebuilds need (two
  // pages of each changed): those evicted cannot be rebuilt. (The cache holds the last
  // chunks written.)
  const std::vector<uint64_t> lost = {3, 12, 33, 38};
  for (uint64_t i : lost) {
    const std::string key = chunkKey("vol", i, 0);
    auto objects = stores_.keys("s", key.substr(0, key.size() - 16));
    ASSERT_FALSE(objects.empty()) << key;
    for (const std::string& object : objects) ASSERT_TRUE(stores_.client("s").remove(object));
  }
  // Until the rest are stored, or no more are for a while (a slow store).
  for (uint64_t left = v->stats().dirtyChunks, stuck = 0; left > lost.size() && stuck < 5;) {
    EXPECT_FALSE(e->checkpoint("vol", std::chrono::seconds(3)));
    const uint64_t now = v->stats().dirtyChunks;
    stuck = now < left ? 0 : stuck + 1;
    left = now;
  }
  auto done = v->stats();
  // Only lost ones are left (those still cached were stored from the cache).
  EXPECT_GE(done.dirtyChunks, 1u);
  EXPECT_LE(done.dirtyChunks, lost.size()) << "a chunk that cannot be rebuilt held up its neighbours";
  EXPECT_NE(done.lastError.find("volumes/vol/chunks/"), std::string::npos) << done.lastError;
  e->shutdown();
}

// A chunk whose changes are only in the journal, with its segments gone from the
// store: the start says so instead of serving the chunk without them.
TEST_F(JournalTest, AnEvictedChunkWhoseSegmentsAreGoneIsAnError) {
  EngineOptions small = overCache("gw");
  {
    auto e = testing::startEngine(small);
    auto v = e->find("vol");
    std::vector<uint8_t> image(kChunks * kBigChunk, 0);
    scatter(*v, image, 24);
    journalAll(*v);
    ASSERT_GT(v->stats().journalOnlyChunks, 0u);
    scatter(*v, image, 25);  // patched over their pieces: those need them too
    ASSERT_EQ(v->stats().journalOnlyChunks, 0u);
    stopWithStoreDown(*e);
  }
  for (const std::string& key : segments()) ASSERT_TRUE(stores_.client("s").remove(key));
  auto failed = Engine::open(small);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.status().toString().find("no segment in the store holds its changes"), std::string::npos)
      << failed.status().toString();
}

}  // namespace
}  // namespace ferry
