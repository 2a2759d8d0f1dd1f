// Volumes made from a snapshot: readable at once from the snapshot's objects (lazy
// hydration), copied into objects of their own in the background, the snapshot held
// meanwhile and released after; restarts and a fresh gateway carry on; bad requests
// are refused and leave nothing behind.

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <optional>
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
constexpr uint64_t kSize = 16 * kChunk;

class CloneTest : public testing::StoreTest {
 protected:
  std::unique_ptr<Engine> open(const std::string& state, size_t hydrateThreads,
                               std::vector<CreateSpec> creates = {{"vol", kSize, kChunk}},
                               const std::string& store = "store") {
    EngineOptions o = testing::smallEngine(dir_ / state, stores_.url(store));
    o.creates = std::move(creates);
    o.hydrateThreads = hydrateThreads;
    // A request may take about a third of the lease (as in JournalTest): under a loaded
    // CI run radosgw once answered no PUT for 1.8 s, past what a 3 s lease allows, and
    // the snapshot delete after it found the lease unconfirmed.
    o.leaseTtlSeconds = 10;
    return testing::startEngine(o);
  }
  // vol holds a, stored, in snapshot s1; then vol moves on to b.
  void seed(Engine& e) {
    auto v = e.find("vol");
    ASSERT_TRUE(v->write(0, a_, false));
    ASSERT_TRUE(e.snapshot("vol", "s1", std::chrono::seconds(30)));
    ASSERT_TRUE(v->write(0, b_, false));
    ASSERT_TRUE(e.checkpoint("vol", std::chrono::seconds(30)));
    v->deleteSuperseded();
  }
  static std::vector<uint8_t> readAll(Volume& v) {
    std::vector<uint8_t> out(v.size());
    EXPECT_TRUE(v.read(0, out));
    return out;
  }
  bool exists(const std::string& key) { return stores_.exists("store", key); }
  // Keys under prefix in the store that have part in them.
  size_t count(const std::string& store, const std::string& prefix, const std::string& part = "") {
    size_t n = 0;
    for (const std::string& k : stores_.keys(store, prefix)) n += k.find(part) != std::string::npos;
    return n;
  }
  static bool waitHydrated(Volume& v) {
    return testing::waitUntil([&] { return !v.hydrating(); }, std::chrono::seconds(30));
  }
  CreateSpec cloneSpec(const std::string& name = "copy") { return CreateSpec{name, 0, 0, "vol", "s1"}; }
  // What s1 holds: a_, then zeros.
  std::vector<uint8_t> snapshotContent() const {
    std::vector<uint8_t> out(kSize, 0);
    std::copy(a_.begin(), a_.end(), out.begin());
    return out;
  }

  std::vector<uint8_t> a_ = randomBytes(12 * kChunk + 4096, 1);  // chunks 13–15 never written
  std::vector<uint8_t> b_ = randomBytes(kSize, 2);
};

TEST_F(CloneTest, ReadableAtOnceThenHydratedAndTheSnapshotReleased) {
  std::vector<uint8_t> expect = snapshotContent();
  {
    auto e = open("gw", 0);  // no hydration yet: every read goes to the snapshot's objects
    seed(*e);
    auto c = e->createVolume(cloneSpec());
    ASSERT_TRUE(c) << c.status().toString();
    EXPECT_EQ(c.value()->size(), kSize);
    EXPECT_EQ(readAll(*c.value()), expect) << "the clone does not read the snapshot";
    EXPECT_EQ(c.value()->stats().hydrationLeft, 13u);
    // A write to a chunk still read from the snapshot: the rest of the chunk stays.
    auto patch = randomBytes(100, 3);
    ASSERT_TRUE(c.value()->write(kChunk + 10, patch, false));
    std::copy(patch.begin(), patch.end(), expect.begin() + kChunk + 10);
    EXPECT_EQ(readAll(*c.value()), expect);
    EXPECT_TRUE(exists(holdKey("vol", "s1", "copy")));
    EXPECT_TRUE(exists(sourceKey("copy")));
    // The snapshot and its volume are in use.
    EXPECT_EQ(e->deleteSnapshot("vol", "s1").code(), Code::kBusy);
    EXPECT_TRUE(exists(snapshotKey("vol", "s1"))) << "the manifest was not put back";
    EXPECT_EQ(e->deleteVolume("vol", false).code(), Code::kBusy);
    EXPECT_TRUE(exists(snapshotKey("vol", "s1"))) << "the refused volume delete did not put the manifests back";
    EXPECT_TRUE(e->find("vol"));
    e->shutdown();
  }
  // A restart with hydration on carries on where the metadata says.
  auto e = open("gw", 4);
  auto c = e->find("copy");
  ASSERT_TRUE(c);
  ASSERT_TRUE(waitHydrated(*c)) << c->stats().hydrationLeft << " chunks left";
  EXPECT_FALSE(exists(holdKey("vol", "s1", "copy")));
  EXPECT_FALSE(exists(sourceKey("copy")));
  // The snapshot and the source volume can go now; the clone keeps its content.
  Status deleted = e->deleteSnapshot("vol", "s1");
  ASSERT_TRUE(deleted) << deleted.toString();
  ASSERT_TRUE(e->deleteVolume("vol", false));
  EXPECT_EQ(readAll(*c), expect);
  ASSERT_TRUE(e->snapshot("copy", "later", std::chrono::seconds(30)));
  e->shutdown();
  // And after a restart, from its own objects only.
  auto again = open("gw", 4, {});
  EXPECT_EQ(readAll(*again->find("copy")), expect);
}

TEST_F(CloneTest, ASnapshotOfAVolumeStillBeingHydratedCopiesTheRestFirst) {
  std::vector<uint8_t> expect = snapshotContent();
  auto e = open("gw", 0);  // no hydration threads: only the snapshot copies
  seed(*e);
  auto c = e->createVolume(cloneSpec());
  ASSERT_TRUE(c) << c.status().toString();
  auto patch = randomBytes(4096, 5);
  ASSERT_TRUE(c.value()->write(3 * kChunk, patch, false));  // one dirty chunk among the source's
  std::copy(patch.begin(), patch.end(), expect.begin() + 3 * kChunk);
  ASSERT_GT(c.value()->stats().hydrationLeft, 0u);
  auto m = e->snapshot("copy", "early", std::chrono::seconds(30));
  ASSERT_TRUE(m) << m.status().toString();
  EXPECT_EQ(c.value()->stats().hydrationLeft, 0u);
  EXPECT_FALSE(c.value()->hydrating()) << "the source was not released";
  EXPECT_FALSE(exists(holdKey("vol", "s1", "copy")));
  // The manifest names only the clone's own objects: the source may go.
  for (const ChunkKey& k : m.value().chunks) EXPECT_EQ(k.generation & Volume::kSourceGen, 0u) << k.index;
  Status deleted = e->deleteSnapshot("vol", "s1");
  ASSERT_TRUE(deleted) << deleted.toString();
  ASSERT_TRUE(e->deleteVolume("vol", false));
  // The snapshot holds the clone's content at the request: the write after it is not in it.
  ASSERT_TRUE(c.value()->write(0, randomBytes(kSize, 6), false));
  auto d = e->createVolume(CreateSpec{"third", 0, 0, "copy", "early"});
  ASSERT_TRUE(d) << d.status().toString();
  EXPECT_EQ(readAll(*d.value()), expect);
}

TEST_F(CloneTest, AFreshGatewayAdoptsAVolumeStillBeingHydrated) {
  std::vector<uint8_t> expect = snapshotContent();
  auto patch = randomBytes(kChunk, 4);
  std::copy(patch.begin(), patch.end(), expect.begin() + 3 * kChunk);
  {
    auto e = open("lost", 0);
    seed(*e);
    auto c = e->createVolume(cloneSpec());
    ASSERT_TRUE(c);
    ASSERT_TRUE(c.value()->write(3 * kChunk, patch, false));
    ASSERT_TRUE(e->checkpoint("copy", std::chrono::seconds(30)));
    e->shutdown();
  }
  // A new gateway (no state) on the same store: its own chunk 3, the rest from s1.
  auto e = open("new", 4, {{"copy", kSize, kChunk}});
  auto c = e->find("copy");
  ASSERT_TRUE(c);
  EXPECT_EQ(readAll(*c), expect);
  ASSERT_TRUE(waitHydrated(*c));
  EXPECT_FALSE(exists(holdKey("vol", "s1", "copy")));
  EXPECT_EQ(readAll(*c), expect);
}

// Another gateway, with a store of its own, makes a volume from a snapshot in the
// first gateway's store: the hold is in the snapshot's store, the copies in its own.
TEST_F(CloneTest, AVolumeFromASnapshotInAnotherGatewaysStore) {
  auto first = open("first", 0);
  seed(*first);
  auto second = open("second", 4, {}, "store2");
  CreateSpec spec = cloneSpec();
  spec.sourceStore = stores_.url("store");
  auto c = second->createVolume(spec);
  ASSERT_TRUE(c) << c.status().toString();
  std::vector<uint8_t> expect = snapshotContent();
  EXPECT_EQ(readAll(*c.value()), expect);
  ASSERT_TRUE(waitHydrated(*c.value()));
  EXPECT_FALSE(exists(holdKey("vol", "s1", "copy")));
  EXPECT_EQ(count("store2", "volumes/copy/chunks/"), 13u);
  Status deleted = first->deleteSnapshot("vol", "s1");
  ASSERT_TRUE(deleted) << deleted.toString();
  EXPECT_EQ(readAll(*c.value()), expect);
}

// A gateway that crashed in the middle of making a volume from a snapshot (the store
// has the header, source.json and the hold; its metadata has nothing): the same
// request again resumes it.
TEST_F(CloneTest, AnInterruptedCreateResumes) {
  {
    auto e = open("gw", 0);
    seed(*e);
    ASSERT_TRUE(e->createVolume(cloneSpec()));
    e->shutdown();
  }
  std::filesystem::remove_all(dir_ / "gw");
  auto e = open("gw", 4, {});
  auto c = e->createVolume(cloneSpec());
  ASSERT_TRUE(c) << c.status().toString();
  std::vector<uint8_t> expect = snapshotContent();
  EXPECT_EQ(readAll(*c.value()), expect);
  ASSERT_TRUE(waitHydrated(*c.value()));
  EXPECT_FALSE(exists(holdKey("vol", "s1", "copy")));
}

// Hydration is a copy nobody waits for: while clients read from the store and the
// uploads' few turns are taken, its copies wait (reads of the volume go on); once the
// clients are done it finishes. A snapshot of the volume copies the rest at once.
TEST_F(CloneTest, HydrationWaitsBehindClientsReadsUnlessASnapshotNeedsIt) {
  auto e = open("gw", 4);
  seed(*e);
  StorePriority& priority = e->storePriority();
  std::shared_ptr<Volume> c;
  {
    // A client reading, and the uploads' two turns (widthUnderLoad) taken.
    std::optional<StorePriority::Client> reading(priority.client());
    std::optional<StorePriority::Upload> first(priority.upload()), second(priority.upload());
    auto made = e->createVolume(cloneSpec());
    ASSERT_TRUE(made) << made.status().toString();
    c = made.value();
    ASSERT_TRUE(testing::waitUntil([&] { return priority.waiting() > 0; })) << "no hydration copy waited";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(c->stats().hydrationLeft, 13u) << "hydration copied past the clients' reads";
    EXPECT_EQ(readAll(*c), snapshotContent());
    // A snapshot waits for the copies: they go now (and if they do not, the clients
    // stop, so that the test ends).
    auto snap = std::async(std::launch::async, [&] { return e->snapshot("copy", "mid", std::chrono::seconds(30)); });
    const bool prompt = snap.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
    EXPECT_TRUE(prompt) << "the snapshot's copies waited behind the clients";
    if (!prompt) {
      reading.reset();
      first.reset();
      second.reset();
    }
    auto taken = snap.get();
    ASSERT_TRUE(taken) << taken.status().toString();
    EXPECT_EQ(c->stats().hydrationLeft, 0u);
  }
  EXPECT_GT(priority.heldBack(), 0u);
  EXPECT_EQ(readAll(*c), snapshotContent());
  // And with the clients gone, a volume made now is hydrated in the background.
  auto later = e->createVolume(cloneSpec("later"));
  ASSERT_TRUE(later) << later.status().toString();
  ASSERT_TRUE(waitHydrated(*later.value()));
  EXPECT_EQ(readAll(*later.value()), snapshotContent());
}

TEST_F(CloneTest, DeletingAVolumeBeingHydratedReleasesTheSnapshot) {
  auto e = open("gw", 0);
  seed(*e);
  ASSERT_TRUE(e->createVolume(cloneSpec()));
  ASSERT_TRUE(e->deleteVolume("copy", false));
  EXPECT_FALSE(exists(holdKey("vol", "s1", "copy")));
  EXPECT_EQ(count("store", "volumes/copy/"), 0u);
  Status deleted = e->deleteSnapshot("vol", "s1");
  ASSERT_TRUE(deleted) << deleted.toString();
}

TEST_F(CloneTest, BadRequestsAreRefusedAndLeaveNothing) {
  auto e = open("gw", 0);
  seed(*e);
  auto expectRefused = [&](CreateSpec spec, Code code) {
    auto c = e->createVolume(spec);
    ASSERT_FALSE(c) << spec.name;
    EXPECT_EQ(c.status().code(), code) << c.status().toString();
    if (spec.name != "vol") {
      EXPECT_FALSE(e->find(spec.name));
    }
  };
  expectRefused({"copy", 0, 0, "vol", "nope"}, Code::kNotFound);
  expectRefused({"copy", 0, 0, "none", "s1"}, Code::kNotFound);
  expectRefused({"copy", kSize / 2, 0, "vol", "s1"}, Code::kInvalidArgument);   // smaller
  expectRefused({"copy", 0, 2 * kChunk, "vol", "s1"}, Code::kInvalidArgument);  // another chunk size
  expectRefused({"copy", 0, 0, "vol", "../s1"}, Code::kInvalidArgument);
  expectRefused({"vol", 0, 0, "vol", "s1"}, Code::kBusy);  // exists already
  EXPECT_EQ(count("store", "volumes/", "/holds/"), 0u) << "a refused request left a hold";
  EXPECT_EQ(count("store", "volumes/copy/"), 0u);
  // A bigger volume than the snapshot: the rest reads as zeros.
  auto big = e->createVolume({"big", 2 * kSize, 0, "vol", "s1"});
  ASSERT_TRUE(big) << big.status().toString();
  std::vector<uint8_t> tail(kSize, 1);
  ASSERT_TRUE(big.value()->read(kSize, tail));
  EXPECT_EQ(tail, std::vector<uint8_t>(kSize, 0));
}

}  // namespace
}  // namespace ferry
