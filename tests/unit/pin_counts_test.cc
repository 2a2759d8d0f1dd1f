// PinCounts against a std::map doing the same adds and releases.
#include "pin_counts.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <utility>

namespace ferry {
namespace {

using Key = std::pair<uint64_t, uint64_t>;

void expectSame(const PinCounts& pins, const std::map<Key, int>& model, uint64_t maxIndex, uint64_t maxGen) {
  ASSERT_EQ(pins.size(), model.size());
  for (uint64_t i = 0; i <= maxIndex; ++i) {
    for (uint64_t g = 1; g <= maxGen; ++g) {
      ASSERT_EQ(pins.contains(i, g), model.count({i, g}) != 0) << i << "." << g;
    }
  }
}

TEST(PinCountsTest, CountsEachObjectsPinsUntilTheLastIsReleased) {
  PinCounts pins;
  EXPECT_FALSE(pins.contains(7, 1));
  EXPECT_FALSE(pins.release(7, 1));  // never pinned
  pins.add(7, 1);
  pins.add(7, 1);
  pins.add(7, 2);
  EXPECT_EQ(pins.size(), 2u);
  EXPECT_FALSE(pins.release(7, 1));  // one manifest still pins it
  EXPECT_TRUE(pins.contains(7, 1));
  EXPECT_TRUE(pins.release(7, 1));
  EXPECT_FALSE(pins.contains(7, 1));
  EXPECT_FALSE(pins.release(7, 1));
  EXPECT_TRUE(pins.contains(7, 2));
  EXPECT_TRUE(pins.release(7, 2));
  EXPECT_EQ(pins.size(), 0u);
  EXPECT_EQ(pins.capacity(), 0u);  // nothing pinned: no memory kept
}

// Few distinct keys in small tables: runs wrap around the end and deletions shift
// entries back across it.
TEST(PinCountsTest, AgreesWithAMapThroughRandomAddsAndReleases) {
  std::mt19937_64 rng(12345);
  PinCounts pins;
  std::map<Key, int> model;
  constexpr uint64_t kIndexes = 40, kGens = 3;
  for (int round = 0; round < 20000; ++round) {
    Key k{rng() % kIndexes, 1 + rng() % kGens};
    // Phases that mostly add, then mostly release: the table grows and shrinks.
    bool adding = (round / 500) % 2 == 0 ? rng() % 4 != 0 : rng() % 4 == 0;
    if (adding) {
      pins.add(k.first, k.second);
      ++model[k];
    } else {
      auto it = model.find(k);
      bool last = it != model.end() && it->second == 1;
      ASSERT_EQ(pins.release(k.first, k.second), last);
      if (it != model.end() && --it->second == 0) model.erase(it);
    }
    if (round % 97 == 0) {
      ASSERT_NO_FATAL_FAILURE(expectSame(pins, model, kIndexes, kGens));
    }
  }
  ASSERT_NO_FATAL_FAILURE(expectSame(pins, model, kIndexes, kGens));
}

// A recovery point of a large volume pinned and then released: the table holds
// every entry at a bounded load and gives its memory back.
TEST(PinCountsTest, AManifestOfAMillionChunksIsPinnedAndReleased) {
  PinCounts pins;
  constexpr uint64_t kChunks = 1 << 20;
  for (uint64_t i = 0; i < kChunks; ++i) pins.add(i, (i % 7) + 1);
  EXPECT_EQ(pins.size(), kChunks);
  EXPECT_LE(pins.capacity(), kChunks * 8 / 3);  // at least three eighths full
  for (uint64_t i = 0; i < kChunks; i += 1000) {
    EXPECT_TRUE(pins.contains(i, (i % 7) + 1));
    EXPECT_FALSE(pins.contains(i, (i % 7) + 2));
  }
  for (uint64_t i = 0; i < kChunks; ++i) {
    ASSERT_TRUE(pins.release(i, (i % 7) + 1)) << i;
  }
  EXPECT_EQ(pins.size(), 0u);
  EXPECT_EQ(pins.capacity(), 0u);
}

}  // namespace
}  // namespace ferry
