// Garbage collection with a crash injected at every step: a snapshot's delete and the
// collection after it stop after k deletes (k = 0, 1, 2, …) and the gateway restarts.
// Whatever k, nothing a manifest or the volume references is lost, and a rerun leaves
// exactly the referenced objects (nothing leaks). On file:// and, in engine_s3_test,
// on radosgw (tests/lib/test_stores.h).

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <set>

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

class GcCrashTest : public testing::StoreTest {
 protected:
  // Each run k has its own state dir and its own store (a prefix of the bucket on S3).
  std::unique_ptr<Engine> open(const std::filesystem::path& dir, const std::string& store) {
    EngineOptions o = testing::smallEngine(dir / "state", stores_.url(store), control_);
    o.creates = {{"vol", kSize, kChunk}};
    o.shutdownTimeoutSeconds = 5;
    o.recoveryIntervalSeconds = 0;
    o.hydrateThreads = 0;
    return testing::startEngine(o);
  }
  std::set<std::string> chunkObjects(const std::string& store) {
    std::set<std::string> out;
    for (const std::string& k : stores_.keys(store, "")) {
      if (k.find("/chunks/") != std::string::npos) out.insert(k);
    }
    return out;
  }
};

TEST_F(GcCrashTest, ACrashAtAnyStepLosesNothingAndARerunLeaksNothing) {
  auto v1 = randomBytes(kSize, 1), v2 = randomBytes(kSize, 2), v3 = randomBytes(kSize, 3);
  for (int k = 0;; ++k) {
    SCOPED_TRACE("crash after " + std::to_string(k) + " deletes");
    TempDir dir;
    const std::string store = "run" + std::to_string(k);
    SnapshotManifest s2;
    bool finished = false;
    {
      control_->removeBudget = -1;
      auto e = open(dir.path(), store);
      auto v = e->find("vol");
      // s1 holds v1, s2 holds v2, the volume v3; and two leaked objects.
      for (const auto* data : {&v1, &v2, &v3}) {
        ASSERT_TRUE(v->write(0, *data, false));
        ASSERT_TRUE(e->checkpoint("vol", std::chrono::seconds(30)));
        v->deleteSuperseded();
        if (data == &v1) {
          ASSERT_TRUE(e->snapshot("vol", "s1", std::chrono::seconds(30)));
        } else if (data == &v2) {
          s2 = e->snapshot("vol", "s2", std::chrono::seconds(30)).value();
        }
      }
      for (uint64_t i : {1, 5}) ASSERT_TRUE(stores_.client(store).put(chunkKey("vol", i, 3), bytesOf("leak")));
      // The crash: the k+1-th delete and every one after it never happen.
      control_->removeBudget = k;
      Status deleted = e->deleteSnapshot("vol", "s1");
      auto collected = e->collect("vol");
      finished = static_cast<bool>(deleted) && static_cast<bool>(collected) && collected.value().errors == 0;
      e->shutdown();
    }
    control_->removeBudget = -1;
    // Restarted: nothing referenced is lost.
    auto e = open(dir.path(), store);
    auto v = e->find("vol");
    std::vector<uint8_t> back(kSize);
    ASSERT_TRUE(v->read(0, back));
    EXPECT_TRUE(back == v3) << "the volume lost data";
    for (const ChunkKey& c : s2.chunks) {
      std::string body = stores_.read(store, chunkKey("vol", c.index, c.generation));
      EXPECT_TRUE(body.size() == kChunk && std::memcmp(body.data(), v2.data() + c.index * kChunk, kChunk) == 0)
          << "snapshot s2 lost chunk " << c.index;
    }
    if (stores_.exists(store, snapshotKey("vol", "s1"))) {
      // Still there (the crash came before its manifest went): still whole.
      auto m = decodeManifest(stores_.read(store, snapshotKey("vol", "s1")));
      ASSERT_TRUE(m);
      for (const ChunkKey& c : m.value().chunks) {
        EXPECT_TRUE(stores_.exists(store, chunkKey("vol", c.index, c.generation))) << "s1 points at a deleted object";
      }
    }
    // The rerun: exactly the volume's and s2's objects are left.
    ASSERT_TRUE(e->deleteSnapshot("vol", "s1"));
    ASSERT_TRUE(e->collect("vol"));
    std::set<std::string> expect;
    for (auto [i, g] : v->remoteMap()) expect.insert(chunkKey("vol", i, g));
    for (const ChunkKey& c : s2.chunks) expect.insert(chunkKey("vol", c.index, c.generation));
    EXPECT_EQ(chunkObjects(store), expect);
    if (finished) {  // k passed the number of deletes the whole run makes
      std::cout << "the run made " << k << " deletes; a crash was injected after each\n";
      break;
    }
    ASSERT_LT(k, 64) << "the collection never finished";
  }
}

}  // namespace
}  // namespace ferry
