// nbdkit ferry through real nbdkit and libnbd: data integrity, crash and restart,
// clean shutdown, replacing a gateway, the lease, faults and bad input.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace ferry::testing {
namespace {

namespace fs = std::filesystem;

class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (pluginPath().empty() || !haveProgram("nbdkit")) GTEST_SKIP() << "nbdkit or the plugin is not available";
    fs::create_directories(dir_ / "store");
  }
  std::vector<std::string> args(const std::string& state, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"state=" + (dir_ / state), "store=file://" + (dir_ / "store"),
                                  "lease-ttl=5", "commit-interval=100"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::unique_ptr<Nbdkit> start(const std::string& state, std::vector<std::string> extra = {},
                                std::vector<std::string> filters = {}) {
    auto n = std::make_unique<Nbdkit>(dir_ / (state + ".sock"), args(state, std::move(extra)), std::move(filters));
    EXPECT_TRUE(n->start()) << n->log();
    return n;
  }
  size_t storedChunks(const std::string& volume) {
    return listFiles(dir_ / ("store/volumes/" + volume + "/chunks")).size();
  }
  // Waits until the admin interface reports no dirty chunk.
  bool waitDrained(const std::string& state, int seconds = 60) {
    std::string sock = state.front() == '/' ? state + "/admin.sock" : (dir_ / state) + "/admin.sock";
    for (int i = 0; i < seconds * 10; ++i) {
      std::string out = adminRequest(sock, R"({"op":"stats"})");
      if (out.find("\"dirty_bytes\":0") != std::string::npos && out.find("\"upload_queue\":0") != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // Waits until every dirty chunk of the gateway is journaled (none waits for a whole
  // upload) and the journal holds at least one segment.
  bool waitJournaled(const std::string& state, int seconds = 60) {
    for (int i = 0; i < seconds * 10; ++i) {
      auto st = nlohmann::json::parse(adminRequest((dir_ / state) + "/admin.sock", R"({"op":"stats"})"));
      if (st.value("dirty_bytes", -1) == 0 && st.value("journaled_bytes", 0) > 0 &&
          st["volumes"][0].value("journal_segments", 0) > 0) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // For the crash tests of a cached chunk (volume "vol" of 32 chunks of 1 MiB, a 16 MiB
  // cache): chunk 0 and chunks 8..31 of `model` stored (1..7 zeros in `model` from
  // here), then chunk 0 read back into the cache and flushed: its row says "cached,
  // clean".
  void storeAndCacheChunkZero(NbdClient& c, std::vector<uint8_t>& model) {
    constexpr uint64_t kChunk = 1 << 20;
    ASSERT_TRUE(c.pwrite(model.data(), kChunk, 0)) << c.error();
    ASSERT_TRUE(c.pwrite(model.data() + 8 * kChunk, 24 * kChunk, 8 * kChunk)) << c.error();
    std::fill(model.begin() + kChunk, model.begin() + 8 * kChunk, 0);
    ASSERT_TRUE(c.flush()) << c.error();
    std::string out = adminRequest((dir_ / "gw") + "/admin.sock", R"({"op":"checkpoint","name":"vol","timeout":60})");
    ASSERT_NE(out.find("\"ok\":true"), std::string::npos) << out;
    std::vector<uint8_t> buf(kChunk);
    ASSERT_TRUE(c.pread(buf.data(), kChunk, 0)) << c.error();
    ASSERT_TRUE(c.flush()) << c.error();
  }
  // Reads chunks 8..31: 24 MiB through the 16 MiB cache, in an order no stream
  // detection skips, so that the cache evicts all it can.
  void readThroughTheCache(NbdClient& c) {
    constexpr uint64_t kChunk = 1 << 20;
    std::vector<uint8_t> buf(kChunk);
    for (uint64_t i = 0; i < 24; ++i) {
      uint64_t chunk = 8 + (i * 7) % 24;
      ASSERT_TRUE(c.pread(buf.data(), kChunk, chunk * kChunk)) << c.error();
    }
  }
  // readThroughTheCache, then chunk 0 into `out`, which must have left the cache (or be
  // kept there until stored whole, which is as good: nothing else reads it).
  void readChunkZeroAfterEviction(NbdClient& c, std::vector<uint8_t>& out) {
    constexpr uint64_t kChunk = 1 << 20;
    ASSERT_NO_FATAL_FAILURE(readThroughTheCache(c));
    auto stats = [&] {
      auto st = nlohmann::json::parse(adminRequest((dir_ / "gw") + "/admin.sock", R"({"op":"stats","name":"vol"})"));
      return st["volumes"][0];
    };
    const auto before = stats();
    out.resize(kChunk);
    ASSERT_TRUE(c.pread(out.data(), kChunk, 0)) << c.error();
    ASSERT_TRUE(before.value("cache_only_chunks", 0) > 0 ||
                stats().value("read_misses", 0) > before.value("read_misses", 0))
        << "chunk 0 was still cached: this test needs it evicted";
  }

  // After a kill that left an unflushed change of chunk 0 (1 MiB): it reads as it was
  // (`before`) or as changed (`after`), and the same again once out of the cache.
  void expectChunkZeroStable(NbdClient& c, const std::vector<uint8_t>& before, const std::vector<uint8_t>& after) {
    constexpr size_t kChunk = 1 << 20;
    auto is = [](const std::vector<uint8_t>& got, const std::vector<uint8_t>& model) {
      return std::equal(got.begin(), got.end(), model.begin());
    };
    std::vector<uint8_t> first(kChunk), again(kChunk);
    ASSERT_TRUE(c.pread(first.data(), kChunk, 0)) << c.error();
    const bool old = is(first, before);
    EXPECT_TRUE(old || is(first, after)) << "chunk 0 is neither what it was nor what was written";
    ASSERT_NO_FATAL_FAILURE(readChunkZeroAfterEviction(c, again));
    EXPECT_TRUE(again == first) << "chunk 0 read " << (old ? "as it was" : "as written") << " after the kill, then "
                                << (is(again, before) ? "as it was" : "otherwise") << " once out of the cache";
  }
  void unflushedWriteToACachedChunkThenKill(bool anotherBoot);

  TempDir dir_;
};

TEST_F(PluginTest, ListsEveryVolumeAsAnExportWithItsSize) {
  auto n = start("s", {"create=alpha:64M", "create=beta:1G:4M"});
  std::string out;
  ASSERT_EQ(runCommand("nbdinfo --list --json '" + n->uri("") + "'", &out), 0) << out;
  EXPECT_NE(out.find("\"export-name\": \"alpha\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"export-name\": \"beta\""), std::string::npos) << out;
  EXPECT_NE(out.find("67108864"), std::string::npos) << out;
  EXPECT_NE(out.find("1073741824"), std::string::npos) << out;
  {
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "beta")) << c.error();
    EXPECT_EQ(c.size(), 1 << 30);
    NbdClient bad;
    EXPECT_FALSE(bad.connect(n->socket(), "nope"));
  }
  // nbdkit waits for its clients to disconnect before it stops.
  EXPECT_EQ(n->stop(), 0) << n->log();
  EXPECT_NE(n->log().find("no volume named 'nope'"), std::string::npos);
}

TEST_F(PluginTest, RandomWritesOverTheWholeVolumeReadBackIdentical) {
  constexpr uint64_t kSize = 32 << 20;
  auto n = start("s", {"create=vol:32M:256K", "cache-size=16M", "upload-buffer=8M"});
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  std::vector<uint8_t> model(kSize, 0);
  std::mt19937 rng(42);
  for (int i = 0; i < 600; ++i) {
    uint64_t off = (rng() % (kSize / 512)) * 512;
    size_t len = std::min<uint64_t>(kSize - off, 512 * (1 + rng() % 512));
    int kind = static_cast<int>(rng() % 10);
    if (kind == 0) {
      ASSERT_TRUE(c.zero(len, off)) << c.error() << "\n" << n->log();
      std::fill_n(model.begin() + static_cast<long>(off), len, 0);
    } else if (kind == 1) {
      ASSERT_TRUE(c.trim(len, off)) << c.error() << "\n" << n->log();
      std::fill_n(model.begin() + static_cast<long>(off), len, 0);
    } else {
      auto d = randomBytes(len, static_cast<uint32_t>(i));
      ASSERT_TRUE(c.pwrite(d.data(), len, off, kind == 2)) << c.error() << "\n" << n->log();
      std::copy(d.begin(), d.end(), model.begin() + static_cast<long>(off));
    }
  }
  std::vector<uint8_t> back(kSize);
  for (uint64_t off = 0; off < kSize; off += 4 << 20) ASSERT_TRUE(c.pread(back.data() + off, 4 << 20, off));
  EXPECT_TRUE(back == model);
  // Reading past the end is refused, not served.
  uint8_t b[512];
  EXPECT_FALSE(c.pread(b, 512, kSize));
}

TEST_F(PluginTest, KilledAfterFlushLosesNothingAndUploadsOnRestart) {
  auto data = randomBytes(6 << 20, 1);
  {
    // The store is unreachable, so every chunk is still dirty at the kill.
    fs::rename(dir_ / "store", dir_ / "store.away");
    fs::create_directories(dir_ / "store");
    auto n = start("s", {"create=vol:64M"});
    fs::rename(dir_ / "store", dir_ / "store.tmp");
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    ASSERT_TRUE(c.pwrite(data.data(), data.size(), 3 << 20)) << c.error();
    ASSERT_TRUE(c.flush()) << c.error();
    n->kill9();
    fs::rename(dir_ / "store.tmp", dir_ / "store");
    fs::remove_all(dir_ / "store.away");
  }
  EXPECT_EQ(storedChunks("vol"), 0u);
  auto n = start("s", {"create=vol:64M"});
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(c.pread(back.data(), back.size(), 3 << 20));
  EXPECT_TRUE(back == data);
  ASSERT_TRUE(waitDrained("s")) << n->log();
  EXPECT_EQ(storedChunks("vol"), 6u);
}

TEST_F(PluginTest, CleanShutdownUploadsAndAFreshGatewayServesIt) {
  auto data = randomBytes(5 << 20, 2);
  {
    auto n = start("old", {"create=vol:64M"});
    {
      NbdClient c;
      ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
      ASSERT_TRUE(c.pwrite(data.data(), data.size(), 1 << 20)) << c.error();
    }  // no flush: the clean stop must still upload everything
    EXPECT_EQ(n->stop(), 0) << n->log();
  }
  // A fresh state directory on the same store: a replaced gateway.
  auto n = start("new", {"create=vol:64M"});
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(c.pread(back.data(), back.size(), 1 << 20));
  EXPECT_TRUE(back == data);
}

TEST_F(PluginTest, SigtermUploadsDirtyChunksBeforeExit) {
  auto n = start("s", {"create=vol:64M"});
  {
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    auto data = randomBytes(4 << 20, 3);
    ASSERT_TRUE(c.pwrite(data.data(), data.size(), 0)) << c.error();
  }
  EXPECT_EQ(n->stop(), 0) << n->log();
  EXPECT_EQ(storedChunks("vol"), 4u);
}

TEST_F(PluginTest, SecondGatewayOnTheSameVolumeIsRefused) {
  auto first = start("one", {"create=vol:64M"});
  Nbdkit second(dir_ / "two.sock", args("two", {"create=vol:64M"}));
  EXPECT_FALSE(second.start());
  EXPECT_NE(second.log().find("is in use by gateway"), std::string::npos) << second.log();
}

TEST_F(PluginTest, BadInputGetsClearErrors) {
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  } cases[] = {
      {{"state=" + (dir_ / "a"), "store=file://" + (dir_ / "store"), "create=../x:1M"}, "volume name"},
      {{"state=" + (dir_ / "a"), "store=file://" + (dir_ / "store"), "create=x/y:1M"}, "volume name"},
      {{"state=" + (dir_ / "a")}, "store=URL are required"},
      {{"state=" + (dir_ / "a"), "store=file://" + (dir_ / "missing")}, "does not exist"},
      {{"state=" + (dir_ / "a"), "store=s3://bucket"}, "endpoint"},
      {{"state=" + (dir_ / "a"), "store=file://" + (dir_ / "store"), "create=v:100"}, "multiple of 512"},
      {{"state=" + (dir_ / "a"), "store=file://" + (dir_ / "store"), "cache-size=1M"}, "cache-size"},
      {{"state=" + (dir_ / "a"), "store=file://" + (dir_ / "store"), "bogus=1"}, "unknown parameter"},
  };
  for (auto& tc : cases) {
    Nbdkit n(dir_ / "bad.sock", tc.args);
    EXPECT_FALSE(n.start());
    EXPECT_NE(n.log().find(tc.expect), std::string::npos) << n.log();
    fs::remove(dir_ / "bad.sock.log");
  }
  // A state directory whose database is not a database.
  fs::create_directories(dir_ / "corrupt");
  {
    std::FILE* f = std::fopen((dir_ / "corrupt/ferry.db").c_str(), "w");
    std::fputs("garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage", f);
    std::fclose(f);
  }
  Nbdkit n(dir_ / "bad.sock", {"state=" + (dir_ / "corrupt"), "store=file://" + (dir_ / "store")});
  EXPECT_FALSE(n.start());
  EXPECT_NE(n.log().find("ferry.db"), std::string::npos) << n.log();
}

TEST_F(PluginTest, StoreOutageBuffersWritesThenDrains) {
  auto n = start("s", {"create=vol:64M", "cache-size=32M", "upload-buffer=8M"});
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  fs::rename(dir_ / "store", dir_ / "store.away");  // the store goes away
  auto data = randomBytes(16 << 20, 4);
  ASSERT_TRUE(c.pwrite(data.data(), 4 << 20, 0)) << c.error();  // fits in the buffer
  auto rest = std::async(std::launch::async, [&] {
    NbdClient c2;
    if (!c2.connect(n->socket(), "vol")) return false;
    return c2.pwrite(data.data() + (4 << 20), 12 << 20, 4 << 20);
  });
  EXPECT_EQ(rest.wait_for(std::chrono::seconds(2)), std::future_status::timeout)
      << "writes past the upload buffer must wait for the store";
  fs::rename(dir_ / "store.away", dir_ / "store");  // back
  ASSERT_EQ(rest.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_TRUE(rest.get());
  ASSERT_TRUE(c.flush());
  ASSERT_TRUE(waitDrained("s")) << n->log();
  EXPECT_EQ(storedChunks("vol"), 16u);
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(c.pread(back.data(), back.size(), 0));
  EXPECT_TRUE(back == data);
}

TEST_F(PluginTest, WorksBehindDelayAndErrorFilters) {
  std::string errFile = dir_ / "inject";
  auto n = start("s", {"create=vol:16M", "rdelay=5ms", "wdelay=5ms", "error=EIO", "error-pwrite-rate=1",
                       "error-pwrite-file=" + errFile},
                 {"error", "delay"});
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  auto d = randomBytes(1 << 20, 5);
  ASSERT_TRUE(c.pwrite(d.data(), d.size(), 0)) << c.error();
  { std::FILE* f = std::fopen(errFile.c_str(), "w"); std::fclose(f); }
  auto other = randomBytes(1 << 20, 6);
  EXPECT_FALSE(c.pwrite(other.data(), other.size(), 0));  // injected EIO
  fs::remove(errFile);
  std::vector<uint8_t> back(d.size());
  ASSERT_TRUE(c.pread(back.data(), back.size(), 0)) << c.error();
  EXPECT_TRUE(back == d) << "a failed write must not touch the data";
}

TEST_F(PluginTest, AFullCacheDiskFailsWritesWithENOSPCAndLosesNothing) {
  // The state directory on a 24 MiB tmpfs, with a cache budget larger than the disk.
  std::string mnt = dir_ / "small";
  fs::create_directories(mnt);
  if (::geteuid() != 0 || runCommand("mount -t tmpfs -o size=24M tmpfs " + mnt) != 0) {
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { runCommand("umount -l " + path); }
  } unmount{mnt};
  auto n = std::make_unique<Nbdkit>(dir_ / "f.sock",
                                    std::vector<std::string>{"state=" + mnt + "/state",
                                                             "store=file://" + (dir_ / "store"), "create=vol:64M",
                                                             "cache-size=256M", "upload-buffer=128M"});
  ASSERT_TRUE(n->start()) << n->log();
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  auto data = randomBytes(48 << 20, 7);
  size_t written = 0;
  bool sawFull = false;
  for (; written < data.size(); written += 1 << 20) {
    if (!c.pwrite(data.data() + written, 1 << 20, written)) {
      sawFull = true;
      EXPECT_EQ(nbd_get_errno(), ENOSPC) << c.error();
      break;
    }
  }
  ASSERT_TRUE(sawFull) << "48 MiB of dirty data cannot fit on a 24 MiB disk";
  ASSERT_GT(written, 0u);
  // Everything acknowledged before the disk filled reads back.
  std::vector<uint8_t> back(written);
  ASSERT_TRUE(c.pread(back.data(), written, 0)) << c.error();
  EXPECT_TRUE(std::equal(back.begin(), back.end(), data.begin()));
  ASSERT_TRUE(c.flush()) << c.error();
  // Once uploaded, clean chunks can be evicted and writes go through again.
  ASSERT_TRUE(waitDrained(mnt + "/state")) << n->log();
  bool ok = false;
  for (int i = 0; i < 50 && !ok; ++i) {
    ok = c.pwrite(data.data() + written, 1 << 20, written);
    if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(ok) << c.error();
}

// The journal through nbdkit: scattered 4 KiB writes that go to journal segments, not
// whole chunks, survive a kill -9 and a restart on the same state dir, and a fresh
// gateway taking the volume over applies them and stores the chunks whole.
TEST_F(PluginTest, JournaledWritesSurviveAKillAndATakeover) {
  constexpr uint64_t kSize = 32 << 20, kChunk = 1 << 20, kPage = 4096;
  // A two-page upload buffer (it counts changed pages) keeps the journal busy from the
  // first changed page on; whole uploads would wait ten minutes.
  const std::vector<std::string> opts = {"create=vol:32M:1M", "journal=true",        "cache-size=64M",
                                         "upload-buffer=8K",  "upload-delay=600000", "upload-max-age=600000"};
  std::vector<uint8_t> model(kSize, 0);
  std::mt19937 rng(7);
  auto scatter = [&](NbdClient& c, int perChunk, uint32_t seed) {
    for (uint64_t chunk = 0; chunk < kSize / kChunk; ++chunk) {
      for (int i = 0; i < perChunk; ++i) {
        uint64_t off = chunk * kChunk + (rng() % (kChunk / kPage)) * kPage;
        auto d = randomBytes(kPage, seed++);
        ASSERT_TRUE(c.pwrite(d.data(), kPage, off)) << c.error();
        std::copy(d.begin(), d.end(), model.begin() + static_cast<long>(off));
      }
    }
    ASSERT_TRUE(c.flush()) << c.error();
  };
  auto readAll = [&](NbdClient& c) {
    std::vector<uint8_t> back(kSize);
    for (uint64_t off = 0; off < kSize; off += 4 << 20) EXPECT_TRUE(c.pread(back.data() + off, 4 << 20, off));
    return back;
  };
  const std::string journalDir = dir_ / "store/volumes/vol/journal";
  {
    auto n = start("old", opts);
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    scatter(c, 8, 100);
    ASSERT_TRUE(waitJournaled("old")) << adminRequest((dir_ / "old") + "/admin.sock", R"({"op":"stats"})");
    EXPECT_FALSE(listFiles(journalDir).empty());
    ASSERT_TRUE(c.flush()) << c.error();  // commits the journaled rows (else a restart uploads them whole)
    n->kill9();
  }
  {
    // The same state dir: journaled chunks are still dirty in its cache.
    auto n = start("old", opts);
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    EXPECT_TRUE(readAll(c) == model);
    auto st = nlohmann::json::parse(adminRequest((dir_ / "old") + "/admin.sock", R"({"op":"stats","name":"vol"})"));
    EXPECT_GT(st["volumes"][0].value("journaled_chunks", 0), 0) << st.dump();
    // The restart stores its dirty chunks whole at once (they have been dirty since
    // before it): done with that first, or it would also store the pages below whole.
    std::string out = adminRequest((dir_ / "old") + "/admin.sock", R"({"op":"checkpoint","name":"vol","timeout":60})");
    ASSERT_NE(out.find("\"ok\":true"), std::string::npos) << out;
    scatter(c, 4, 900);  // more pages on top, in newer segments
    ASSERT_TRUE(waitJournaled("old")) << adminRequest((dir_ / "old") + "/admin.sock", R"({"op":"stats"})") << n->log();
    n->kill9();
  }
  // A fresh gateway takes the volume over from the dead one: only the store is left.
  auto n = start("new", {"create=vol:32M:1M", "takeover=true"});
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error() << n->log();
  EXPECT_TRUE(readAll(c) == model);
  EXPECT_TRUE(listFiles(journalDir).empty()) << "applied segments are deleted";
  // Every chunk stored whole (a kill -9 may also leave superseded objects, which the
  // next collection deletes).
  std::set<std::string> chunks;
  for (const std::string& f : listFiles(dir_ / "store/volumes/vol/chunks")) {
    chunks.insert(fs::path(f).filename().string().substr(0, 16));
  }
  EXPECT_EQ(chunks.size(), kSize / kChunk);
  EXPECT_NE(n->log().find("applied the journal"), std::string::npos) << n->log();
}

// A journaled chunk rewritten in many pages (too many for the journal), then a kill
// -9 before the metadata commit: its row still says "journaled", but its cache holds
// the newer write. After the restart the cache must not evict it to be rebuilt from
// its journal pieces, which lack that write; it stays until stored whole.
TEST_F(PluginTest, AJournaledChunkRewrittenBeforeAKillIsNotEvictedToItsOlderPieces) {
  constexpr uint64_t kChunk = 1 << 20, kPage = 4096;
  const std::vector<std::string> opts = {"create=vol:32M:1M",     "journal=true",        "cache-size=16M",
                                         "upload-buffer=8K",      "upload-delay=600000", "upload-max-age=600000",
                                         "commit-interval=60000", "cache-streams=true"};
  std::vector<uint8_t> model(32 << 20, 0);
  {
    auto n = start("gw", opts);
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    // Chunks 8..31 stored, for the reads after the restart to fill the cache with.
    auto base = randomBytes(24 * kChunk, 30);
    ASSERT_TRUE(c.pwrite(base.data(), base.size(), 8 * kChunk)) << c.error();
    std::copy(base.begin(), base.end(), model.begin() + 8 * kChunk);
    ASSERT_TRUE(c.flush()) << c.error();
    std::string out = adminRequest((dir_ / "gw") + "/admin.sock", R"({"op":"checkpoint","name":"vol","timeout":60})");
    ASSERT_NE(out.find("\"ok\":true"), std::string::npos) << out;
    // One page into chunk 0: journaled, and its row says so once flushed.
    auto page = randomBytes(kPage, 31);
    ASSERT_TRUE(c.pwrite(page.data(), kPage, 0)) << c.error();
    std::copy(page.begin(), page.end(), model.begin());
    ASSERT_TRUE(waitJournaled("gw")) << adminRequest((dir_ / "gw") + "/admin.sock", R"({"op":"stats"})");
    ASSERT_TRUE(c.flush()) << c.error();
    // Half the chunk rewritten: cached only (the journal leaves it to a whole upload),
    // acknowledged, never committed.
    auto half = randomBytes(kChunk / 2, 32);
    ASSERT_TRUE(c.pwrite(half.data(), half.size(), kChunk / 4)) << c.error();
    std::copy(half.begin(), half.end(), model.begin() + kChunk / 4);
    n->kill9();
  }
  auto n = start("gw", opts);
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  // 24 MiB of stored chunks through a 16 MiB cache, in an order no stream detection
  // skips: the cache evicts all it can.
  std::vector<uint8_t> buf(kChunk);
  for (uint64_t i = 0; i < 24; ++i) {
    uint64_t chunk = 8 + (i * 7) % 24;
    ASSERT_TRUE(c.pread(buf.data(), kChunk, chunk * kChunk)) << c.error();
  }
  auto st = nlohmann::json::parse(adminRequest((dir_ / "gw") + "/admin.sock", R"({"op":"stats","name":"vol"})"));
  EXPECT_EQ(st["volumes"][0].value("journal_only_chunks", -1), 0) << st.dump();
  ASSERT_TRUE(c.pread(buf.data(), kChunk, 0)) << c.error();
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), model.begin())) << "chunk 0 lost the write its cache held";
}

// Zeros over a whole stored chunk the cache holds, acknowledged but never flushed, then
// kill -9: the restarted gateway may read the chunk as it was or as zeros, but the
// same either way before and after the chunk leaves its cache. (The cache's bytes
// must not be punched before the row saying "zero" is committed: the row still says
// "cached, clean" and would serve zeros until an eviction brought the stored bytes
// back.)
TEST_F(PluginTest, UnflushedZerosOverACachedChunkReadTheSameBeforeAndAfterEviction) {
  constexpr uint64_t kChunk = 1 << 20;
  const std::vector<std::string> opts = {"create=vol:32M:1M",     "cache-size=16M",        "upload-delay=600000",
                                         "upload-max-age=600000", "commit-interval=60000", "cache-streams=true"};
  auto model = randomBytes(32 * kChunk, 33);
  {
    auto n = start("gw", opts);
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    ASSERT_NO_FATAL_FAILURE(storeAndCacheChunkZero(c, model));
    ASSERT_TRUE(c.zero(kChunk, 0)) << c.error();
    n->kill9();
  }
  auto n = start("gw", opts);
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  expectChunkZeroStable(c, model, std::vector<uint8_t>(kChunk, 0));
}

// The same for a write into a stored chunk the cache holds clean: acknowledged, never
// flushed, then kill -9. Its row still says "cached, clean", but the cache file has the
// write (a process dies, the page cache stays). Read as it was or as written, chunk 0
// must read the same once it has left the cache (it once read the write, then, evicted
// as clean, the store's older bytes). Chunk 1, written whole and flushed before, is
// dirty and cached with an exact row.
//   anotherBoot: the restart finds the written map (vol.written) of another boot, as
//   after a machine crash, and must distrust every cached chunk; otherwise only chunk
//   0, the one written since its last commit. A distrusted clean chunk whose bytes in
//   the cache file match the checksum of its stored generation is cached again (all
//   but chunk 0, whose bytes hold the unflushed page), without a read from the store.
void PluginTest::unflushedWriteToACachedChunkThenKill(bool anotherBoot) {
  constexpr uint64_t kChunk = 1 << 20, kPage = 4096;
  constexpr blkcnt_t kFsSlack = 64;  // blocks of the file system's own (extent tree)
  // No journal: chunk 1's write waits for room in a cache full of clean chunks, which is
  // journal pressure, and the journal could take chunk 1 (then evicted) or chunk 0's
  // write become a patch, depending on timing (seen once in the suite). Patches have a
  // test of their own below.
  const std::vector<std::string> opts = {"create=vol:32M:1M",     "cache-size=16M",        "upload-delay=600000",
                                         "upload-max-age=600000", "commit-interval=60000", "cache-streams=true",
                                         "journal=false"};
  auto model = randomBytes(32 * kChunk, 34);
  auto page = randomBytes(2 * kPage, 35);
  auto chunk1 = randomBytes(kChunk, 36);
  const std::string admin = (dir_ / "gw") + "/admin.sock";
  auto stats = [&] {
    return nlohmann::json::parse(adminRequest(admin, R"({"op":"stats","name":"vol"})"))["volumes"][0];
  };
  int64_t cachedBefore = 0;
  {
    auto n = start("gw", opts);
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    ASSERT_NO_FATAL_FAILURE(storeAndCacheChunkZero(c, model));
    ASSERT_TRUE(c.pwrite(chunk1.data(), kChunk, kChunk)) << c.error();
    std::copy(chunk1.begin(), chunk1.end(), model.begin() + kChunk);
    ASSERT_TRUE(c.flush()) << c.error();
    // Chunk 1 may have pushed chunk 0 out of the cache: back in, its row committed.
    std::vector<uint8_t> zero(kChunk);
    ASSERT_TRUE(c.pread(zero.data(), kChunk, 0)) << c.error();
    ASSERT_TRUE(c.flush()) << c.error();
    ASSERT_TRUE(c.pwrite(page.data(), page.size(), 5 * kPage)) << c.error();
    cachedBefore = stats().value("cached_bytes", int64_t{-1});
    n->kill9();
  }
  auto written = model;
  std::copy(page.begin(), page.end(), written.begin() + 5 * kPage);
  if (anotherBoot) {
    std::fstream f((dir_ / "gw") + "/vol.written", std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f) << "no written map beside the cache file";
    f.seekp(16);  // the boot id in its header
    f.put('#');
  }
  struct stat was {};
  ASSERT_EQ(::stat(((dir_ / "gw") + "/vol.cache").c_str(), &was), 0);
  auto n = start("gw", opts);
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  {
    // The distrusted clean chunks are checked in the background.
    nlohmann::json st;
    ASSERT_TRUE(testing::waitUntil([&] {
      st = stats();
      return st.value("unverified_chunks", -1) == 0;
    })) << st.dump();
    struct stat now {};
    ASSERT_EQ(::stat(((dir_ / "gw") + "/vol.cache").c_str(), &now), 0);
    EXPECT_GT(was.st_blocks, 0);
    // Chunk 1, dirty: after another boot it stays until stored whole; otherwise its
    // row is trusted.
    EXPECT_EQ(st.value("cache_only_chunks", -1), anotherBoot ? 1 : 0) << st.dump();
    // Chunk 0 leaves the cache, its bytes too; every other clean chunk stays (checked,
    // after another boot), read from the cache file and not the store.
    EXPECT_EQ(st.value("verify_failures", -1), 1) << st.dump();
    // (Before the kill the cache held chunk 0, chunk 1 and the clean chunks 8..31 left.)
    const int64_t cleanOthers = cachedBefore / static_cast<int64_t>(kChunk) - 2;
    EXPECT_EQ(st.value("verified_chunks", int64_t{-1}), anotherBoot ? cleanOthers : 0) << st.dump();
    EXPECT_EQ(st.value("cached_bytes", int64_t{-1}), cachedBefore - static_cast<int64_t>(kChunk)) << st.dump();
    EXPECT_EQ(st.value("downloaded_bytes", -1), 0) << st.dump();
    EXPECT_LE(now.st_blocks, was.st_blocks - static_cast<blkcnt_t>(kChunk / 512 - kFsSlack));
  }
  ASSERT_NO_FATAL_FAILURE(expectChunkZeroStable(c, model, written));
  std::vector<uint8_t> one(kChunk);
  ASSERT_TRUE(c.pread(one.data(), kChunk, kChunk)) << c.error();
  EXPECT_TRUE(one == chunk1) << "chunk 1, flushed, came back otherwise";
}

// A stored chunk the cache held clean, evicted (its row says "cached" until the next
// commit), then a page written to it as a patch, never flushed, and kill -9: the
// cache file holds that page over the chunk's old bytes, under a row that still says
// "cached, clean". Chunk 0 must read the same before and after it leaves the cache.
TEST_F(PluginTest, AnUnflushedPatchOfAChunkEvictedSinceItsLastCommitReadsTheSameAfterAKill) {
  constexpr uint64_t kChunk = 1 << 20, kPage = 4096;
  const std::vector<std::string> opts = {"create=vol:32M:1M",     "cache-size=16M",        "upload-delay=600000",
                                         "upload-max-age=600000", "commit-interval=60000", "cache-streams=true"};
  auto model = randomBytes(32 * kChunk, 37);
  auto page = randomBytes(kPage, 38);
  const std::string admin = (dir_ / "gw") + "/admin.sock";
  auto stats = [&] {
    return nlohmann::json::parse(adminRequest(admin, R"({"op":"stats","name":"vol"})"))["volumes"][0];
  };
  {
    auto n = start("gw", opts);
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    ASSERT_NO_FATAL_FAILURE(storeAndCacheChunkZero(c, model));
    ASSERT_NO_FATAL_FAILURE(readThroughTheCache(c));  // chunk 0 evicted, not committed
    ASSERT_TRUE(c.pwrite(page.data(), kPage, 5 * kPage)) << c.error();
    ASSERT_EQ(stats().value("patched_chunks", -1), 1) << "chunk 0 was not patched: this test needs it";
    n->kill9();
  }
  auto written = model;
  std::copy(page.begin(), page.end(), written.begin() + 5 * kPage);
  auto n = start("gw", opts);
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  ASSERT_NO_FATAL_FAILURE(expectChunkZeroStable(c, model, written));
}

TEST_F(PluginTest, UnflushedWritesToACachedChunkReadTheSameBeforeAndAfterEviction) {
  unflushedWriteToACachedChunkThenKill(false);
}

TEST_F(PluginTest, AfterACrashOfAnotherBootOnlyCleanChunksMatchingTheirChecksumsStayCached) {
  unflushedWriteToACachedChunkThenKill(true);
}

// Pages written to stored chunks the cache cannot hold go to the cache file alone
// (patched chunks: nothing is read from the store), their page maps in the chunk rows:
// a FLUSH, then kill -9, and the restarted gateway reads every flushed page back over
// the stored chunks.
TEST_F(PluginTest, PatchedPagesFlushedBeforeAKillAreReadBack) {
  constexpr uint64_t kSize = 64 << 20, kChunk = 1 << 20, kPage = 4096;
  const std::vector<std::string> opts = {"create=vol:64M:1M",    "journal=true",        "cache-size=16M",
                                         "upload-buffer=16M",    "upload-delay=600000", "upload-max-age=600000",
                                         "commit-interval=60000"};
  std::vector<uint8_t> model = randomBytes(kSize, 40);
  {
    auto n = start("gw", opts);
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    ASSERT_TRUE(c.pwrite(model.data(), kSize, 0)) << c.error();
    ASSERT_TRUE(c.flush()) << c.error();
    std::string out = adminRequest((dir_ / "gw") + "/admin.sock", R"({"op":"checkpoint","name":"vol","timeout":60})");
    ASSERT_NE(out.find("\"ok\":true"), std::string::npos) << out;
    // Two pages into each chunk (one of them two pages long), then a FLUSH.
    for (uint64_t i = 0; i < kSize / kChunk; ++i) {
      for (uint64_t at : {i * kChunk + ((i * 5) % 200) * kPage, i * kChunk + (210 + i % 40) * kPage}) {
        const uint64_t len = i % 4 == 0 ? 2 * kPage : kPage;
        auto data = randomBytes(len, static_cast<int>(100 + i));
        ASSERT_TRUE(c.pwrite(data.data(), len, at)) << c.error();
        std::copy(data.begin(), data.end(), model.begin() + static_cast<std::ptrdiff_t>(at));
      }
    }
    ASSERT_TRUE(c.flush()) << c.error();
    auto st = nlohmann::json::parse(adminRequest((dir_ / "gw") + "/admin.sock", R"({"op":"stats","name":"vol"})"));
    // Patched, or in the journal only if it took their pages meanwhile (the chunks the
    // cache holds, written there, crowd it).
    EXPECT_GT(st["volumes"][0].value("patched_chunks", 0) + st["volumes"][0].value("journal_only_chunks", 0), 32)
        << st.dump();
    n->kill9();
  }
  auto n = start("gw", opts);
  NbdClient c;
  ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
  std::vector<uint8_t> back(kSize);
  for (uint64_t off = 0; off < kSize; off += 4 << 20)
    ASSERT_TRUE(c.pread(back.data() + off, 4 << 20, off)) << c.error();
  EXPECT_TRUE(back == model) << "a flushed page of a patched chunk was lost in the kill";
}

// A gateway killed at any point of adopting a volume from the store (waiting out the
// old owner, after the listing, while recording the rows, after applying the journal)
// finishes at its next start on the same state dir; what it serves, and what it
// leaves in the store, is exactly what the old owner wrote. A restart after a kill in
// the wait waits again.
TEST_F(PluginTest, AKillAtAnyPointOfAnAdoptionLosesNothing) {
  constexpr uint64_t kSize = 32 << 20, kChunk = 1 << 20, kPage = 4096;
  std::vector<uint8_t> model(kSize, 0);
  auto readAll = [&](NbdClient& c) {
    std::vector<uint8_t> back(kSize);
    for (uint64_t off = 0; off < kSize; off += 4 << 20) EXPECT_TRUE(c.pread(back.data() + off, 4 << 20, off));
    return back;
  };
  {
    // Eight chunks stored whole, and the old owner gone cleanly.
    auto n = start("old", {"create=vol:32M:1M"});
    {
      NbdClient c;
      ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
      auto d = randomBytes(8 * kChunk, 61);
      ASSERT_TRUE(c.pwrite(d.data(), d.size(), 0)) << c.error();
      std::copy(d.begin(), d.end(), model.begin());
      ASSERT_TRUE(c.flush());
    }
    ASSERT_TRUE(waitDrained("old"));
    EXPECT_EQ(n->stop(), 0) << n->log();
  }
  {
    // Then pages scattered over every chunk, in journal segments only, and a kill.
    auto n = start("old", {"create=vol:32M:1M", "journal=true", "cache-size=64M", "upload-buffer=8K",
                           "upload-delay=600000", "upload-max-age=600000"});
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error();
    std::mt19937 rng(9);
    uint32_t seed = 300;
    for (uint64_t chunk = 0; chunk < kSize / kChunk; ++chunk) {
      for (int i = 0; i < 4; ++i) {
        uint64_t off = chunk * kChunk + (rng() % (kChunk / kPage)) * kPage;
        auto d = randomBytes(kPage, seed++);
        ASSERT_TRUE(c.pwrite(d.data(), kPage, off)) << c.error();
        std::copy(d.begin(), d.end(), model.begin() + static_cast<long>(off));
      }
    }
    ASSERT_TRUE(c.flush()) << c.error();
    ASSERT_TRUE(waitJournaled("old")) << adminRequest((dir_ / "old") + "/admin.sock", R"({"op":"stats"})");
    n->kill9();
  }
  ASSERT_FALSE(listFiles(dir_ / "store/volumes/vol/journal").empty());

  const std::vector<std::string> opts = {"create=vol:32M:1M", "takeover=true"};
  // Starts the gateway and kills it once its log says one of lines; returns what it
  // logged.
  auto killAt = [&](std::vector<std::string> lines) {
    Nbdkit n(dir_ / "new.sock", args("new", opts));
    size_t logged = n.log().size();
    n.start(0);  // returns at once, the gateway starting
    auto said = [&] {
      std::string log = n.log();
      return std::any_of(lines.begin(), lines.end(),
                         [&](const std::string& l) { return log.find(l, logged) != std::string::npos; });
    };
    for (int i = 0; i < 30000 && n.running() && !said(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_TRUE(n.running()) << n.log();
    n.kill9();
    EXPECT_TRUE(said()) << "never logged " << lines[0] << "\n" << n.log().substr(logged);
    return n.log().substr(logged);
  };
  // The first start waits out the old owner's lease: killed in that wait.
  killAt({"taken over; waiting"});
  // The next waits it out again (the old owner might still be uploading), and is
  // killed after its listing.
  std::string second = killAt({"adopting it from the store"});
  EXPECT_NE(second.find("taken over; waiting"), std::string::npos) << "a restart in the wait did not wait\n" << second;
  // The next is killed as soon as it has applied the journal (or, when the one before
  // got that far, as soon as it has opened the volume).
  killAt({"applied the journal", "bytes, epoch"});
  // Then each start killed later than the one before (10 ms more, a quarter more past
  // 200 ms), until one is ready to serve: the kills land all through the rest (the
  // lease wait, the listing, opening the volume: the log says which).
  int killed = 0, killedLate = 0;
  bool served = false;
  for (int delayMs = 0; delayMs < 10000 && !served; delayMs = delayMs < 200 ? delayMs + 10 : delayMs * 5 / 4) {
    Nbdkit n(dir_ / "new.sock", args("new", opts));
    size_t logged = n.log().size();
    served = n.start(delayMs);
    if (!served) {
      ASSERT_TRUE(n.running()) << n.log();
      n.kill9();
      ++killed;
      std::string said = n.log().substr(logged);
      for (const char* late : {"adopting it from the store", "applied the journal", "bytes, epoch"}) {
        if (said.find(late) != std::string::npos) {
          ++killedLate;
          break;
        }
      }
    }
  }
  ASSERT_TRUE(served) << "no start got through";
  EXPECT_GE(killed, 3) << "the kills did not land inside the adoption";
  // (How many land after the listing depends on the machine's speed: no check.)
  std::cerr << killed << " starts killed, " << killedLate << " of them after the listing\n";

  auto n = start("new", opts);
  {
    NbdClient c;
    ASSERT_TRUE(c.connect(n->socket(), "vol")) << c.error() << n->log();
    EXPECT_TRUE(readAll(c) == model) << n->log();
  }
  ASSERT_TRUE(waitDrained("new")) << n->log();
  EXPECT_EQ(n->stop(), 0) << n->log();
  // What the store holds: a third gateway adopting it reads the same.
  auto third = start("third", {"create=vol:32M:1M"});
  NbdClient c;
  ASSERT_TRUE(c.connect(third->socket(), "vol")) << c.error() << third->log();
  EXPECT_TRUE(readAll(c) == model);
}

}  // namespace
}  // namespace ferry::testing
