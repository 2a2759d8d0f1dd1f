// A volume delete cut short at every step (the k+1-th store delete and every one after
// it fail: a store error, or a crash) and then the name created again, on the same
// gateway or on a restart of it with create=. The new volume is either the old one
// whole (the delete never got past its snapshots) or a new one that reads as zeros,
// never a mix; a gateway adopting it from the store reads the same; and once the
// new one exists, nothing of the old one is left in the store. On file:// and, in
// engine_s3_test, on radosgw (tests/lib/test_stores.h).

#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <map>

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
constexpr uint64_t kSize = 8 * kChunk;

class VolumeDeleteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = stores_.unavailable(); !why.empty()) GTEST_SKIP() << why;
  }
  std::unique_ptr<Engine> open(const std::filesystem::path& dir, const std::string& store) {
    EngineOptions o = testing::smallEngine(dir / "state", stores_.url(store), control_);
    o.creates = {{"vol", kSize, kChunk}};
    o.shutdownTimeoutSeconds = 5;
    o.recoveryIntervalSeconds = 0;
    o.collectIntervalSeconds = 0;
    o.hydrateThreads = 0;
    return testing::startEngine(o);
  }
  std::vector<uint8_t> readAll(Engine& e) {
    std::vector<uint8_t> out(kSize);
    EXPECT_TRUE(e.find("vol")->read(0, out));
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
  TempDir dir_;
  testing::TestStores stores_{dir_.path()};
  std::shared_ptr<testing::FaultyStore::Control> control_ = std::make_shared<testing::FaultyStore::Control>();
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
    ASSERT_TRUE(e->find("vol")->write(0, old, false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    ASSERT_TRUE(e->snapshot("vol", "s", std::chrono::seconds(30)));  // withdrawn before the rest
    const auto oldObjects = dataObjects(store);

    control_->removeBudget = k;
    Status deleted = e->deleteVolume("vol", false);
    control_->removeBudget = -1;
    if (!deleted && e->find("vol")) {
      // Refused before anything but snapshots went: still served, still whole.
      EXPECT_TRUE(readAll(*e) == old);
      continue;
    }
    const bool whole = stores_.exists(store, headerKey("vol"));  // the delete failed on the header
    if (!deleted) {
      // The error says what became of the volume.
      const char* says = whole ? "a create of that name adopts it" : "goes when a volume of that name is created";
      EXPECT_NE(deleted.message().find(says), std::string::npos) << deleted.toString();
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
    std::vector<uint8_t> expect = whole ? old : zeros;
    EXPECT_TRUE(readAll(*e) == expect) << (whole ? "the old volume is not whole" : "the new volume reads old data");
    ASSERT_TRUE(e->find("vol")->write(0, fresh, false));
    ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
    std::copy(fresh.begin(), fresh.end(), expect.begin());
    e.reset();

    // A gateway adopting it from the store reads what the new volume holds.
    TempDir other;
    auto adopted = open(other.path(), store);
    EXPECT_TRUE(readAll(*adopted) == expect) << "an adopting gateway reads something else";
    if (!whole) {
      for (const auto& [key, body] : dataObjects(store)) {
        auto was = oldObjects.find(key);
        EXPECT_FALSE(was != oldObjects.end() && was->second == body)
            << key << " of the deleted volume is still in the store";
      }
    }
    if (deleted) {
      std::cout << "the delete made " << k << " store deletes; each was cut short in turn\n";
      break;
    }
    ASSERT_LT(k, 64) << "the delete never finished";
  }
}

}  // namespace
}  // namespace ferry
