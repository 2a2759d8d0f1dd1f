// Read-ahead: the window of chunks held for a sequential reader, the pool that fetches
// them, and the engine serving cold sequential readers from them.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine.h"
#include "faulty_store.h"
#include "read_window.h"
#include "task_pool.h"
#include "test_util.h"

namespace ferry {
namespace {

using testing::FaultyStore;
using testing::randomBytes;
using testing::TempDir;

TEST(ReadWindowTest, AnEntryIsFoundOnlyForItsGeneration) {
  ReadWindow w(4);
  auto e = w.add(7, 100, 0);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(w.find(7, 100), e);
  EXPECT_EQ(w.find(7, 101), nullptr) << "a newer generation is not what the entry holds";
  EXPECT_EQ(w.find(8, 100), nullptr);
}

TEST(ReadWindowTest, AFullyReadChunkLeavesTheWindow) {
  ReadWindow w(4);
  auto e = w.add(1, 5, 0);
  e->ready = true;
  w.consumed(1, 600, 1000, 0);
  EXPECT_TRUE(w.contains(1));
  w.consumed(1, 400, 1000, 0);
  EXPECT_FALSE(w.contains(1));
}

TEST(ReadWindowTest, WhenFullItDropsChunksBehindTheReaderButNotOnesInFlight) {
  ReadWindow w(2);
  auto a = w.add(1, 1, 0);
  auto b = w.add(2, 1, 0);
  EXPECT_EQ(w.add(3, 1, 0), nullptr) << "both still being fetched";
  a->ready = true;
  EXPECT_NE(w.add(3, 1, 0), nullptr) << "chunk 1 is behind the reader at 3";
  EXPECT_FALSE(w.contains(1));
  EXPECT_TRUE(w.contains(2));
  b->ready = true;
  b->status = Status::unavailable("x");
  EXPECT_NE(w.add(4, 1, 0), nullptr) << "a failed fetch makes room";
  EXPECT_FALSE(w.contains(2));
}

TEST(ReadWindowTest, WhatAReaderNeedsNowDisplacesReadAheadNotStartedYet) {
  ReadWindow w(2);
  auto near = w.add(5, 1, 0);
  auto far = w.add(6, 1, 0);
  near->started = true;
  auto now = w.add(4, 1, 0);
  ASSERT_NE(now, nullptr);
  EXPECT_TRUE(far->abandoned) << "its read-ahead task must skip it";
  EXPECT_FALSE(w.contains(6));
  EXPECT_TRUE(w.contains(5));
}

TEST(ReadWindowTest, StaleEntriesMakeRoom) {
  ReadWindow w(1);
  auto a = w.add(9, 1, 0);
  a->ready = true;
  EXPECT_EQ(w.add(3, 1, 10), nullptr) << "9 is ahead of 3 and fresh";
  EXPECT_NE(w.add(3, 1, ReadWindow::kStaleMs + 1), nullptr);
}

TEST(ReadWindowTest, ZeroCapacityHoldsNothing) {
  ReadWindow w(0);
  EXPECT_EQ(w.add(0, 1, 0), nullptr);
}

TEST(TaskPoolTest, RunsTasksAndRefusesPastItsQueue) {
  TaskPool pool(1, 2);
  EXPECT_FALSE(pool.submit([] {})) << "not started";
  pool.start();
  std::atomic<bool> release{false}, running{false};
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.submit([&] {
    running = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ++ran;
  }));
  while (!running) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(pool.submit([&] { ++ran; }));
  EXPECT_TRUE(pool.submit([&] { ++ran; }));
  EXPECT_FALSE(pool.submit([&] { ++ran; })) << "queue of 2 is full";
  release = true;
  for (int i = 0; i < 1000 && ran < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(ran.load(), 3);
  pool.stop();
  EXPECT_FALSE(pool.submit([] {}));
}

constexpr uint64_t kChunk = 64 << 10;
constexpr uint64_t kChunks = 32;

class ReadAheadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = randomBytes(kChunks * kChunk, 21);
    auto e = open(options("seed", 0));
    ASSERT_TRUE(e->find("vol")->write(0, data_, false));
    e->shutdown();
  }
  EngineOptions options(const std::string& state, uint64_t readAhead) {
    EngineOptions o;
    o.stateDir = dir_ / state;
    o.storeUrl = "file://" + (dir_ / "store") + "?create";
    o.creates = {{"vol", kChunks * kChunk, kChunk}};
    o.cacheSize = 64 << 20;
    o.uploadThreads = 2;
    o.leaseTtlSeconds = 3;
    o.commitIntervalMs = 50;
    o.readAheadBytes = readAhead;
    o.wrapStore = [c = control_](std::unique_ptr<ObjectStore> s) {
      return std::unique_ptr<ObjectStore>(new FaultyStore(std::move(s), c));
    };
    return o;
  }
  std::unique_ptr<Engine> open(const EngineOptions& o) {
    auto e = Engine::open(o);
    if (!e) throw std::runtime_error(e.status().toString());
    EXPECT_TRUE(e.value()->start());
    return std::move(e).value();
  }
  // Reads [offset, offset + length) in pieces of `piece`, in order, and checks them.
  void readInPieces(Volume& v, uint64_t offset, uint64_t length, size_t piece) {
    std::vector<uint8_t> buf(piece);
    for (uint64_t off = offset; off < offset + length; off += piece) {
      ASSERT_TRUE(v.read(off, buf)) << "at " << off;
      ASSERT_TRUE(std::equal(buf.begin(), buf.end(), data_.begin() + static_cast<ptrdiff_t>(off))) << "at " << off;
    }
  }

  TempDir dir_;
  std::shared_ptr<FaultyStore::Control> control_ = std::make_shared<FaultyStore::Control>();
  std::vector<uint8_t> data_;
};

TEST_F(ReadAheadTest, ASequentialReaderInSmallPiecesFetchesEachChunkOnce) {
  auto e = open(options("a", 4 * kChunk));
  auto v = e->find("vol");
  control_->gets = 0;
  control_->latencyMs = 3;  // a store a little slower than memory, as every real one is
  readInPieces(*v, 0, kChunks * kChunk, 16 << 10);
  VolumeStats st = v->stats();
  // The first two chunks start with range reads (3 each) before the stream is seen;
  // after that every chunk is one GET, fetched ahead of the reader.
  EXPECT_LE(control_->gets.load(), kChunks + 6) << "range " << st.rangeReads << " misses " << st.readMisses << " hits "
                                                << st.readAheadHits << " fetched " << st.readAheadFetches;
  // How many were fetched ahead rather than by the reader overtaking the read-ahead
  // threads depends on timing; that most were is checked by bench/s3_vs_store.sh.
  EXPECT_GT(st.readAheadFetches, 0u);
  EXPECT_GT(st.readAheadHits, 0u);
  EXPECT_LE(st.cachedChunks, 2u) << "a cold scan does not fill the cache";
}

TEST_F(ReadAheadTest, WithoutReadAheadAStreamInPiecesStillFetchesAChunkOnce) {
  auto e = open(options("b", 0));
  auto v = e->find("vol");
  control_->gets = 0;
  readInPieces(*v, 0, kChunks * kChunk, 16 << 10);
  // Each chunk: three range reads, then the whole chunk, held for the rest of it.
  EXPECT_LE(control_->gets.load(), 4 * kChunks);
  EXPECT_EQ(v->stats().readAheadFetches, 0u);
}

TEST_F(ReadAheadTest, CacheStreamsKeepsWhatReadAheadFetched) {
  auto o = options("c", 4 * kChunk);
  o.cacheStreams = true;
  auto e = open(o);
  auto v = e->find("vol");
  readInPieces(*v, 0, kChunks * kChunk, kChunk / 4);
  EXPECT_EQ(v->stats().cachedChunks, kChunks);
  control_->gets = 0;
  readInPieces(*v, 0, kChunks * kChunk, kChunk);
  EXPECT_EQ(control_->gets.load(), 0u);
}

TEST_F(ReadAheadTest, WritesAreNeverHiddenByChunksFetchedAhead) {
  auto e = open(options("d", 8 * kChunk));
  auto v = e->find("vol");
  readInPieces(*v, 0, 2 * kChunk, kChunk / 4);  // a stream: chunks 2..9 are fetched ahead
  ASSERT_TRUE(testing::waitUntil([&] { return v->stats().readAheadFetches >= 8; }));

  auto fresh = randomBytes(kChunk, 22);
  ASSERT_TRUE(v->write(3 * kChunk, fresh, false));
  std::vector<uint8_t> back(kChunk);
  ASSERT_TRUE(v->read(3 * kChunk, back));
  EXPECT_TRUE(back == fresh) << "the write, not the chunk fetched before it";

  // Uploaded and evicted, chunk 3 is remote again at a newer generation.
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(10)));
  ASSERT_GT(v->evictSome(kChunks), 0u);
  ASSERT_TRUE(v->read(3 * kChunk, back));
  EXPECT_TRUE(back == fresh);
  std::copy(fresh.begin(), fresh.end(), data_.begin() + 3 * kChunk);
  readInPieces(*v, 2 * kChunk, 8 * kChunk, kChunk);
}

TEST_F(ReadAheadTest, AFailedFetchAheadIsRetriedByTheReaderAndReportsTheOutage) {
  auto e = open(options("e", 4 * kChunk));
  auto v = e->find("vol");
  readInPieces(*v, 0, kChunk, kChunk / 4);
  control_->down = true;
  std::vector<uint8_t> buf(kChunk / 4);
  Status s = v->read(kChunk, buf);  // a stream: 2..5 are tried ahead, and fail
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.toString();
  s = v->read(2 * kChunk, buf);
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.toString();
  control_->down = false;
  readInPieces(*v, kChunk, 7 * kChunk, kChunk);
}

}  // namespace
}  // namespace ferry
