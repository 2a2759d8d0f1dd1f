// After a machine crash (another boot: nothing tells which cached chunks the last run
// wrote after their last commit), a clean cached chunk stays cached if its bytes in the
// cache file match the CRC-32C its row keeps of its stored generation; otherwise it is
// read from the store. Checked by a reader or writer that comes first, or in the
// background once the engine has started. docs/volume-engine.md, "Verified after a
// crash".

#include <gtest/gtest.h>

#include <fstream>

#include "engine.h"
#include "engine_options.h"
#include "faulty_store.h"
#include "metadata.h"
#include "test_util.h"

namespace ferry {
namespace {

using testing::FaultyStore;
using testing::randomBytes;
using testing::TempDir;

constexpr uint64_t kChunk = 64 << 10, kChunks = 8, kSize = kChunks * kChunk;

class CacheVerifyTest : public ::testing::Test {
 protected:
  EngineOptions options() {
    EngineOptions o = testing::smallEngine(dir_ / "gw", "file://" + (dir_ / "store") + "?create", control_);
    o.creates = {{"vol", kSize, kChunk}};
    return o;
  }
  // Every chunk written, stored and cached clean; a clean stop; then what a machine
  // crash leaves (markCrashed).
  void storeAllThenCrash() {
    auto e = testing::startEngine(options());
    ASSERT_TRUE(e->find("vol")->write(0, model_, false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    EXPECT_EQ(e->find("vol")->stats().cachedBytes, kSize);
    e->shutdown();
    ASSERT_TRUE(testing::markCrashed(dir_ / "gw"));
  }
  // Flips one byte of chunk `index` in the cache file (what a write the crash cut
  // short, or a torn page, leaves).
  void damageCachedChunk(uint64_t index) {
    std::fstream f(dir_ / "gw" + "/vol.cache", std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f);
    f.seekg(static_cast<std::streamoff>(index * kChunk + 100));
    char c = 0;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(index * kChunk + 100));
    f.put(static_cast<char>(c ^ 0x40));
  }

  TempDir dir_;
  std::shared_ptr<FaultyStore::Control> control_ = std::make_shared<FaultyStore::Control>();
  std::vector<uint8_t> model_ = randomBytes(kSize, 71);
};

TEST_F(CacheVerifyTest, MatchingChunksStayCachedAndADamagedOneIsReadFromTheStore) {
  ASSERT_NO_FATAL_FAILURE(storeAllThenCrash());
  ASSERT_NO_FATAL_FAILURE(damageCachedChunk(3));
  // Opened, not started: no background check yet, so readers and writers meet
  // unverified chunks.
  auto opened = Engine::open(options());
  ASSERT_TRUE(opened) << opened.status().toString();
  std::unique_ptr<Engine> e = std::move(opened).value();
  auto v = e->find("vol");
  ASSERT_EQ(v->stats().unverifiedChunks, kChunks);
  EXPECT_EQ(v->stats().cachedBytes, 0u);
  const uint64_t getsBefore = control_->gets.load();

  std::vector<uint8_t> back(kChunk);
  ASSERT_TRUE(v->read(0, std::span(back).first(4096)));  // a small read, checked whole
  EXPECT_TRUE(std::equal(back.begin(), back.begin() + 4096, model_.begin()));
  auto page = randomBytes(4096, 72);
  ASSERT_TRUE(v->write(kChunk + 8192, page, false));  // a write into chunk 1
  std::copy(page.begin(), page.end(), model_.begin() + kChunk + 8192);
  ASSERT_TRUE(v->zero(5 * kChunk, kChunk, false));  // zeros over chunk 5: never checked
  std::fill(model_.begin() + 5 * kChunk, model_.begin() + 6 * kChunk, 0);
  ASSERT_TRUE(v->read(3 * kChunk, back));  // the damaged one
  EXPECT_TRUE(std::equal(back.begin(), back.end(), model_.begin() + 3 * kChunk)) << "chunk 3 read its damaged cache";
  EXPECT_EQ(control_->gets.load() - getsBefore, 1u) << "only the damaged chunk comes from the store";
  EXPECT_EQ(v->stats().verifiedChunks, 2u);
  EXPECT_EQ(v->stats().verifyFailures, 1u);

  ASSERT_TRUE(e->start());
  ASSERT_TRUE(testing::waitUntil([&] { return v->stats().unverifiedChunks == 0; }));
  const VolumeStats st = v->stats();
  EXPECT_EQ(st.verifiedChunks, kChunks - 2);
  EXPECT_EQ(st.verifyFailures, 1u);
  EXPECT_EQ(st.cachedBytes, kSize - kChunk) << "all but chunk 5 (zeros) should be cached, chunk 3 fetched again";
  std::vector<uint8_t> all(kSize);
  ASSERT_TRUE(v->read(0, all));
  EXPECT_TRUE(all == model_);
  EXPECT_EQ(control_->gets.load() - getsBefore, 1u);
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  e->shutdown();

  // What the checks concluded is in the rows: a clean start trusts them, and a fresh
  // gateway reads the same from the store.
  auto again = testing::startEngine(options());
  EXPECT_EQ(again->find("vol")->stats().cachedBytes, kSize - kChunk);
  EXPECT_EQ(again->find("vol")->stats().unverifiedChunks, 0u);
  again->shutdown();
  EngineOptions fresh = options();
  fresh.stateDir = dir_ / "fresh";
  auto other = testing::startEngine(fresh);
  ASSERT_TRUE(other->find("vol")->read(0, all));
  EXPECT_TRUE(all == model_);
}

// A clean stop before the checks were done leaves the rest to verify: the next start
// checks them, crash or not.
TEST_F(CacheVerifyTest, ChecksCutShortByACleanStopGoOnAtTheNextStart) {
  ASSERT_NO_FATAL_FAILURE(storeAllThenCrash());
  {
    auto opened = Engine::open(options());
    ASSERT_TRUE(opened) << opened.status().toString();
    std::vector<uint8_t> back(kChunk);
    ASSERT_TRUE(opened.value()->find("vol")->read(0, back));  // chunk 0 checked, no other
    EXPECT_EQ(opened.value()->find("vol")->stats().unverifiedChunks, kChunks - 1);
    opened.value()->shutdown();
  }
  auto e = testing::startEngine(options());
  auto v = e->find("vol");
  ASSERT_TRUE(testing::waitUntil([&] { return v->stats().unverifiedChunks == 0; }))
      << v->stats().unverifiedChunks << " chunks left unchecked";
  EXPECT_EQ(v->stats().verifiedChunks, kChunks - 1);
  EXPECT_EQ(v->stats().cachedBytes, kSize);
  const uint64_t getsBefore = control_->gets.load();
  std::vector<uint8_t> all(kSize);
  ASSERT_TRUE(v->read(0, all));
  EXPECT_TRUE(all == model_);
  EXPECT_EQ(control_->gets.load(), getsBefore);
}

// The background checks take only room the cache has free: chunks clients brought in
// since the start are not evicted for them.
TEST_F(CacheVerifyTest, BackgroundChecksEvictNothing) {
  constexpr uint64_t kBig = 512 * kChunk, kCache = 16 << 20;  // room for 256 chunks
  EngineOptions o = options();
  o.creates = {{"vol", kBig, kChunk}};
  o.cacheSize = kCache;
  const auto big = randomBytes(kBig, 73);
  std::vector<uint8_t> back(kChunk);
  {
    auto e = testing::startEngine(o);
    auto v = e->find("vol");
    // Chunks 200.. first, then 0..199, which push most of the others out.
    const auto head = std::span(big).first(200 * kChunk);
    ASSERT_TRUE(v->write(head.size(), std::span(big).subspan(head.size()), false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    ASSERT_TRUE(v->write(0, head, false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    e->shutdown();
    ASSERT_TRUE(testing::markCrashed(dir_ / "gw"));
  }
  auto opened = Engine::open(o);
  ASSERT_TRUE(opened) << opened.status().toString();
  std::unique_ptr<Engine> e = std::move(opened).value();
  auto v = e->find("vol");
  // 100 chunks a client reads before the checks: checked or fetched, cached either way
  // (backwards: a sequential scan would not be cached).
  for (uint64_t i = 399; i >= 300; --i) ASSERT_TRUE(v->read(i * kChunk, back));
  const VolumeStats before = v->stats();
  ASSERT_EQ(before.cachedBytes, 100 * kChunk);
  constexpr uint64_t kRoom = kCache / kChunk - 100;
  ASSERT_GT(before.unverifiedChunks, kRoom) << "this test needs more chunks to check than the cache has room for";
  ASSERT_TRUE(e->start());
  ASSERT_TRUE(testing::waitUntil([&] { return v->stats().unverifiedChunks == 0; }));
  const VolumeStats after = v->stats();
  EXPECT_EQ(after.cachedBytes, kCache) << "the checks did not fill the free room";
  EXPECT_EQ(after.verifiedChunks - before.verifiedChunks, kRoom);
  EXPECT_EQ(after.verifyFailures - before.verifyFailures, before.unverifiedChunks - kRoom) << "no room: not kept";
  const uint64_t getsBefore = control_->gets.load();
  for (uint64_t i = 300; i < 400; ++i) ASSERT_TRUE(v->read(i * kChunk, back));
  EXPECT_EQ(control_->gets.load(), getsBefore) << "a chunk read after the start was evicted for the checks";
  std::vector<uint8_t> all(kBig);
  ASSERT_TRUE(v->read(0, all));
  EXPECT_TRUE(all == big);
}

// Rows from before checksums were kept (or of a chunk whose generation this gateway
// never read or stored whole) have none: such a chunk leaves the cache after a crash,
// as every clean cached chunk did before, and its bytes are punched.
TEST_F(CacheVerifyTest, ChunksWithoutAChecksumAreDistrustedAsBefore) {
  ASSERT_NO_FATAL_FAILURE(storeAllThenCrash());
  {
    auto db = SqliteDb::open(dir_ / "gw" + "/ferry.db", false);
    ASSERT_TRUE(db) << db.status().toString();
    ASSERT_TRUE(db->exec("UPDATE chunks SET crc = NULL WHERE idx % 2 = 0"));
  }
  auto e = testing::startEngine(options());
  auto v = e->find("vol");
  ASSERT_TRUE(testing::waitUntil([&] { return v->stats().unverifiedChunks == 0; }));
  EXPECT_EQ(v->stats().verifiedChunks, kChunks / 2);
  EXPECT_EQ(v->stats().verifyFailures, 0u);
  EXPECT_EQ(v->stats().cachedBytes, kSize / 2);
  const uint64_t getsBefore = control_->gets.load();
  std::vector<uint8_t> all(kSize);
  ASSERT_TRUE(v->read(0, all));
  EXPECT_TRUE(all == model_);
  EXPECT_EQ(control_->gets.load() - getsBefore, kChunks / 2);
}

}  // namespace
}  // namespace ferry
