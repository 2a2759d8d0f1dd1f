// WrittenMap: what a map left in a file tells the next start of the same boot, and
// that nothing else is taken for such a map.
#include "written_map.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace ferry {
namespace {

TEST(WrittenMapTest, TellsWhichChunksAreMarkedInAMapOfThisBoot) {
  testing::TempDir dir;
  const std::string path = dir / "vol.written";
  EXPECT_FALSE(WrittenMap::marked(path, 130)) << "no file, and something was told";
  {
    auto m = WrittenMap::open(path, 130);
    ASSERT_TRUE(m) << m.status().toString();
    EXPECT_EQ(WrittenMap::marked(path, 130), std::vector<uint64_t>{});
    for (uint64_t i : {0, 5, 63, 64, 129, 77}) m->mark(i);
    m->mark(130);  // past the end: ignored
    m->clear(77);
    m->clear(5);
    m->mark(5);
    // What a killed process leaves: the file as mapped, nothing unmapped or synced.
    EXPECT_EQ(WrittenMap::marked(path, 130), (std::vector<uint64_t>{0, 5, 63, 64, 129}));
  }
  EXPECT_EQ(WrittenMap::marked(path, 130), (std::vector<uint64_t>{0, 5, 63, 64, 129}));
  EXPECT_FALSE(WrittenMap::marked(path, 131)) << "a map of another size was trusted";
  {
    auto again = WrittenMap::open(path, 130);  // the next run's: empty
    ASSERT_TRUE(again) << again.status().toString();
    EXPECT_EQ(WrittenMap::marked(path, 130), std::vector<uint64_t>{});
    again->mark(3);
  }
  // Another boot's map (its id differs in the header): it cannot tell.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(16);
    f.put('#');
  }
  EXPECT_FALSE(WrittenMap::marked(path, 130)) << "another boot's map was trusted";
  { std::ofstream(path, std::ios::trunc) << "not a map"; }
  EXPECT_FALSE(WrittenMap::marked(path, 130));
}

}  // namespace
}  // namespace ferry
