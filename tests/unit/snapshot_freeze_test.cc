// The copy-on-write freeze of a snapshot: a snapshot taken while a writer runs holds
// exactly the volume at one moment between the request and its answer (every write
// acknowledged before the request, none started after the answer); a write after the
// freeze copies the frozen chunk first; a snapshot the store cannot take fails and
// leaves nothing behind.

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
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
constexpr uint64_t kChunks = 16;
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kBlocks = kChunk * kChunks / kBlock;
constexpr uint64_t kTorn = ~uint64_t{0};

class SnapshotFreezeTest : public testing::StoreTest {
 protected:
  std::unique_ptr<Engine> open(int uploadDelayMs, int uploadMaxAgeMs) {
    EngineOptions o = testing::smallEngine(dir_ / "state", stores_.url("store"), control_);
    o.creates = {{"vol", kChunk * kChunks, kChunk}};
    o.uploadBuffer = 8 * kChunk;  // back-pressure under the write load
    o.uploadDelayMs = uploadDelayMs;
    o.uploadMaxAgeMs = uploadMaxAgeMs;
    return testing::startEngine(o);
  }
  std::string objectText(const ChunkKey& k) {
    return stores_.read("store", chunkKey("vol", k.index, k.generation));
  }
  // The snapshot's content, read from its objects in the store.
  std::vector<uint8_t> content(const SnapshotManifest& m) {
    std::vector<uint8_t> out(m.size);
    for (const ChunkKey& k : m.chunks) {
      std::string body = objectText(k);
      EXPECT_EQ(body.size(), kChunk) << chunkKey("vol", k.index, k.generation);
      std::memcpy(out.data() + k.index * kChunk, body.data(), std::min<size_t>(body.size(), kChunk));
    }
    return out;
  }
  size_t chunkObjects() { return stores_.keys("store", "volumes/vol/chunks/").size(); }
};

TEST_F(SnapshotFreezeTest, AWriteAfterTheFreezeCopiesTheChunkFirst) {
  auto e = open(60000, 60000);  // nothing goes up by itself
  auto v = e->find("vol");
  auto c = randomBytes(kChunk, 1);
  ASSERT_TRUE(v->write(2 * kChunk, c, false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));  // chunk 2 stored, clean
  auto a = randomBytes(2 * kChunk, 2);
  ASSERT_TRUE(v->write(0, a, false));  // chunks 0 and 1 dirty

  auto frozen = v->beginFreeze(dir_ / "vol.cow");
  ASSERT_TRUE(frozen) << frozen.status().toString();
  EXPECT_EQ(frozen.value().frozen, 2u);
  // After the freeze: chunk 0 rewritten (copied first), chunk 2 too (stored: pinned).
  ASSERT_TRUE(v->write(0, randomBytes(kChunk, 3), false));
  ASSERT_TRUE(v->write(2 * kChunk, randomBytes(kChunk, 4), false));
  // The volume's own uploads store chunk 1 as it was at the freeze.
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  ASSERT_TRUE(v->completeFreeze(std::chrono::steady_clock::now() + std::chrono::seconds(30)));
  Volume::FreezeStats stats;
  auto keys = v->endFreeze(&stats);
  EXPECT_EQ(stats.copied, 1u);
  ASSERT_EQ(keys.size(), 3u);
  v->deleteSuperseded();  // the snapshot's objects are pinned: they stay
  EXPECT_EQ(objectText(keys[0]), std::string(a.begin(), a.begin() + kChunk));
  EXPECT_EQ(objectText(keys[1]), std::string(a.begin() + kChunk, a.end()));
  EXPECT_EQ(objectText(keys[2]), std::string(c.begin(), c.end()));
  // The copy went up under a generation reserved at the freeze: below the volume's
  // rewrite of the same chunk, so the volume's newest still wins in the store.
  auto map = v->remoteMap();
  ASSERT_EQ(map[0].first, 0u);
  EXPECT_LT(keys[0].generation, map[0].second);
  std::filesystem::remove(dir_ / "vol.cow");
}

// A chunk never stored, frozen, then zeroed: the snapshot's copy goes up under its
// reserved generation, so the zeroed chunk needs a tombstone above it, or a gateway
// adopting the volume from the store would read the copy as the chunk's content.
TEST_F(SnapshotFreezeTest, AZeroedChunkStaysZeroAboveTheSnapshotsCopy) {
  auto e = open(60000, 60000);
  auto v = e->find("vol");
  auto a = randomBytes(kChunk, 7);
  ASSERT_TRUE(v->write(0, a, false));  // dirty, nothing in the store
  ASSERT_TRUE(v->beginFreeze(dir_ / "vol.cow"));
  ASSERT_TRUE(v->zero(0, kChunk, false));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  ASSERT_TRUE(v->completeFreeze(std::chrono::steady_clock::now() + std::chrono::seconds(30)));
  auto keys = v->endFreeze(nullptr);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(objectText(keys[0]), std::string(a.begin(), a.end())) << "the snapshot holds the chunk as frozen";
  e->shutdown();
  // A fresh gateway on the store: the newest object of chunk 0 is the tombstone.
  EngineOptions o;
  o.stateDir = dir_ / "fresh";
  o.storeUrl = stores_.url("store");
  o.creates = {{"vol", kChunk * kChunks, kChunk}};
  o.cacheSize = 16 << 20;
  auto fresh = Engine::open(o);
  ASSERT_TRUE(fresh) << fresh.status().toString();
  std::vector<uint8_t> back(kChunk, 1);
  ASSERT_TRUE(fresh.value()->find("vol")->read(0, back));
  EXPECT_EQ(back, std::vector<uint8_t>(kChunk, 0)) << "the snapshot's copy became the chunk's content";
  std::filesystem::remove(dir_ / "vol.cow");
}

// One writer, one op at a time; snapshots taken meanwhile from another thread. Each
// snapshot must equal the volume after some op C with A <= C <= B (A: ops finished
// before the request, B: ops started before the answer), where op C+1 — in flight at
// the freeze — may be in it or not.
TEST_F(SnapshotFreezeTest, SnapshotsUnderAWriteLoadHoldExactlyOneMomentOfIt) {
  auto e = open(5, 50);
  auto v = e->find("vol");
  struct Op {
    bool zeroChunk;
    uint64_t at;  // block, or chunk for zeroChunk
  };
  std::vector<Op> ops(1);  // op numbers start at 1
  std::atomic<uint64_t> started{0}, finished{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::mt19937_64 rng(42);
    std::vector<uint64_t> block(kBlock / 8);
    for (uint64_t k = 1; !stop; ++k) {
      Op op{rng() % 64 == 0, 0};
      op.at = op.zeroChunk ? rng() % kChunks : rng() % kBlocks;
      ops.push_back(op);  // before `started`: the checker reads ops[1..started]
      started = k;
      Status s;
      if (op.zeroChunk) {
        s = v->zero(op.at * kChunk, kChunk, false);
      } else {
        std::fill(block.begin(), block.end(), k);
        s = v->write(op.at * kBlock, std::span(reinterpret_cast<const uint8_t*>(block.data()), kBlock), false);
      }
      if (!s) {
        ADD_FAILURE() << s.toString();
        break;
      }
      finished = k;
    }
  });

  struct Taken {
    SnapshotManifest m;
    uint64_t a, b;
  };
  std::vector<Taken> taken;
  uint64_t frozenTotal = 0, copiedTotal = 0;
  for (int i = 0; i < 6; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    uint64_t a = finished;
    Volume::FreezeStats fs;
    auto m = e->snapshot("vol", "s" + std::to_string(i), std::chrono::seconds(60), &fs);
    uint64_t b = started;
    ASSERT_TRUE(m) << m.status().toString();
    taken.push_back({m.value(), a, b});
    frozenTotal += fs.frozen;
    copiedTotal += fs.copied;
  }
  stop = true;
  writer.join();
  std::cout << "ops " << finished << ", frozen chunks " << frozenTotal << ", copied " << copiedTotal << "\n";

  auto opBlocks = [&](uint64_t k) {
    std::vector<uint64_t> out;
    if (ops[k].zeroChunk) {
      for (uint64_t b = 0; b < kChunk / kBlock; ++b) out.push_back(ops[k].at * (kChunk / kBlock) + b);
    } else {
      out.push_back(ops[k].at);
    }
    return out;
  };
  auto opValue = [&](uint64_t k) { return ops[k].zeroChunk ? uint64_t{0} : k; };
  for (const Taken& t : taken) {
    std::vector<uint8_t> bytes = content(t.m);
    std::vector<uint64_t> seen(kBlocks);
    for (uint64_t b = 0; b < kBlocks; ++b) {
      const uint8_t* p = bytes.data() + b * kBlock;
      uint64_t first;
      std::memcpy(&first, p, 8);
      seen[b] = first;
      for (uint64_t w = 1; w < kBlock / 8; ++w) {
        uint64_t x;
        std::memcpy(&x, p + w * 8, 8);
        if (x != first) seen[b] = kTorn;
      }
    }
    std::vector<uint64_t> state(kBlocks, 0);
    auto apply = [&](uint64_t k) {
      for (uint64_t b : opBlocks(k)) state[b] = opValue(k);
    };
    for (uint64_t k = 1; k <= t.a; ++k) apply(k);
    bool matched = false;
    for (uint64_t c = t.a; c <= t.b && !matched; ++c) {
      // Differences allowed only in op c+1's blocks, each its new value or torn.
      size_t diff = 0, allowed = 0;
      for (uint64_t b = 0; b < kBlocks; ++b) diff += state[b] != seen[b];
      if (c + 1 <= t.b) {
        for (uint64_t b : opBlocks(c + 1)) {
          if (state[b] != seen[b] && (seen[b] == opValue(c + 1) || seen[b] == kTorn)) ++allowed;
        }
      }
      matched = diff == allowed;
      if (c + 1 <= t.b) apply(c + 1);
    }
    EXPECT_TRUE(matched) << "snapshot " << t.m.id << " is not the volume at any moment between op " << t.a
                         << " and op " << t.b;
  }

  // Every snapshot deleted, then a collection: only the volume's objects are left.
  for (const Taken& t : taken) ASSERT_TRUE(e->deleteSnapshot("vol", t.m.id));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  v->deleteSuperseded();
  ASSERT_TRUE(e->collect("vol"));
  // One object per chunk at most (its newest generation, or its zero tombstone).
  std::set<std::string> indexes;
  for (const std::string& f : stores_.keys("store", "volumes/vol/chunks/")) {
    std::string base = f.substr(f.rfind('/') + 1);
    EXPECT_TRUE(indexes.insert(base.substr(0, base.find('.'))).second) << "a copy or a superseded object leaked: " << f;
  }
}

// Frozen chunks not rewritten go up with the snapshot itself, at once, with
// upload-delay far away; another volume's dirty chunks are not hurried along.
TEST_F(SnapshotFreezeTest, ASnapshotStoresItsFrozenChunksItselfAndHurriesNoOtherVolume) {
  EngineOptions o = testing::smallEngine(dir_ / "state", stores_.url("store"), control_);
  o.creates = {{"vol", kChunk * kChunks, kChunk}, {"other", kChunk * kChunks, kChunk}};
  o.uploadBuffer = 4 * kChunk * kChunks;  // room for both: nothing goes up to make room
  o.uploadDelayMs = 600000;
  o.uploadMaxAgeMs = 600000;
  auto e = testing::startEngine(o);
  auto v = e->find("vol");
  auto other = e->find("other");
  auto a = randomBytes(6 * kChunk, 8);
  ASSERT_TRUE(v->write(kChunk, a, false));  // chunks 1..6
  ASSERT_TRUE(other->write(0, randomBytes(5 * kChunk, 9), false));
  auto m = e->snapshot("vol", "s", std::chrono::seconds(30));
  ASSERT_TRUE(m) << m.status().toString();
  ASSERT_EQ(m.value().chunks.size(), 6u);
  std::vector<uint8_t> want(kChunk * kChunks, 0);
  std::copy(a.begin(), a.end(), want.begin() + kChunk);
  EXPECT_EQ(content(m.value()), want);
  // Stored as the volume's newest generations: vol is clean, other untouched.
  EXPECT_EQ(v->stats().dirtyChunks, 0u);
  EXPECT_EQ(other->stats().dirtyChunks, 5u) << "the snapshot of vol hurried other's uploads";
  EXPECT_TRUE(stores_.keys("store", "volumes/other/chunks/").empty());
  EXPECT_EQ(chunkObjects(), 6u) << "each frozen chunk stored once";
}

TEST_F(SnapshotFreezeTest, ASnapshotTheStoreCannotTakeFailsAndLeavesNothing) {
  auto e = open(60000, 60000);
  auto v = e->find("vol");
  auto a = randomBytes(4 * kChunk, 5);
  ASSERT_TRUE(v->write(0, a, false));
  control_->down = true;
  auto failed = e->snapshot("vol", "s", std::chrono::seconds(1));
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.status().code(), Code::kUnavailable) << failed.status().toString();
  // Writes go on during and after the failed freeze; nothing is left frozen.
  ASSERT_TRUE(v->write(0, randomBytes(kChunk, 6), false));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state" + "/vol.cow"));
  control_->down = false;
  auto ok = e->snapshot("vol", "s", std::chrono::seconds(30));
  ASSERT_TRUE(ok) << ok.status().toString();
  EXPECT_EQ(ok.value().chunks.size(), 4u);
  ASSERT_TRUE(e->deleteSnapshot("vol", "s"));
  ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
  v->deleteSuperseded();
  auto c = e->collect("vol");
  ASSERT_TRUE(c);
  EXPECT_EQ(chunkObjects(), 4u) << "only the volume's newest objects";
}

}  // namespace
}  // namespace ferry
