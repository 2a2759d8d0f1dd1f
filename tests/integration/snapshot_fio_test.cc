// A snapshot taken while fio writes a known pattern through real nbdkit: fio's nbd
// engine rewrites the whole volume in random order, every 4 KiB block stamped with
// its pass and its offset (verify_pattern "MARKER%o"), and logs each write's
// completion time (monotonic clock, ms) and latency. The snapshot is requested in the
// middle of the second pass. Read back through a volume made from it, every block
// must be whole from one pass; every write completed before the request must be in
// it and none issued after its answer. Runs on file:// (snapshot_fio_test) and on
// radosgw (snapshot_fio_s3_test: FERRY_TEST_STORE=s3, tests/lib/test_stores.h).

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "test_stores.h"
#include "test_util.h"

namespace ferry::testing {
namespace {

constexpr uint64_t kSize = 32 << 20;
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kBlocks = kSize / kBlock;
constexpr uint32_t kFirstPass = 0xa1a1a1a1;
constexpr uint32_t kSecondPass = 0xb2b2b2b2;
// fio's log times are milliseconds (truncated), read apart from ours.
constexpr double kSlackMs = 3;

// fio logs times on this clock (CLOCK_MONOTONIC, log_alternate_epoch_clock_id=1) and
// measures them with clock_gettime: its default, the CPU's counter calibrated against
// the wall clock, drifted 5-8 ms from ours in a CI run and failed the test.
int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What fio writes at offset for a pass: the marker (as fio parses "0x…": big-endian
// bytes) then the offset as 8 little-endian bytes, repeated over the block.
std::vector<uint8_t> expectedBlock(uint32_t marker, uint64_t offset) {
  uint8_t unit[12];
  for (int i = 0; i < 4; ++i) unit[i] = static_cast<uint8_t>(marker >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) unit[4 + i] = static_cast<uint8_t>(offset >> (8 * i));
  std::vector<uint8_t> out(kBlock);
  for (size_t i = 0; i < kBlock; ++i) out[i] = unit[i % sizeof unit];
  return out;
}

struct Write {
  double completedMs = 0;  // Unix ms
  double issuedMs = 0;
};

// fio's per-I/O latency log with log_alternate_epoch and log_offset: "time, lat ns, dir, bs, offset, prio".
std::map<uint64_t, Write> readWriteLog(const std::string& path) {
  std::map<uint64_t, Write> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    int64_t timeMs = 0, latNs = 0, dir = 0, bs = 0;
    uint64_t offset = 0;
    char comma = 0;
    if (!(s >> timeMs >> comma >> latNs >> comma >> dir >> comma >> bs >> comma >> offset)) continue;
    if (dir != 1 || bs != static_cast<int64_t>(kBlock)) continue;
    out[offset] = {static_cast<double>(timeMs), static_cast<double>(timeMs) - static_cast<double>(latNs) / 1e6};
  }
  return out;
}

class SnapshotFioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (pluginPath().empty() || !haveProgram("nbdkit")) GTEST_SKIP() << "nbdkit or the plugin is not available";
    if (!haveProgram("fio")) GTEST_SKIP() << "fio is not installed";
    if (std::string why = stores_.unavailable(); !why.empty()) GTEST_SKIP() << why;
  }
  // One pass of fio over the whole volume, every block once in random order.
  std::string fio(uint32_t marker, const std::string& extra) {
    char pattern[32];
    std::snprintf(pattern, sizeof pattern, "0x%08x%%o", marker);
    return "fio --name=pass --ioengine=nbd --uri='" + nbdkit_->uri("vol") +
           "' --rw=randwrite --bs=4k --iodepth=16 --size=" + std::to_string(kSize) +
           " --verify=pattern --verify_pattern='" + pattern + "' --do_verify=0 " + extra;
  }

  TempDir dir_;
  TestStores stores_{dir_.path()};
  std::unique_ptr<Nbdkit> nbdkit_;
};

TEST_F(SnapshotFioTest, HoldsExactlyTheWritesAcknowledgedBeforeTheRequest) {
  nbdkit_ = std::make_unique<Nbdkit>(
      dir_ / "s.sock",
      std::vector<std::string>{"state=" + (dir_ / "state"), "store=" + stores_.url("store"), "create=vol:32M:256K",
                               "upload-buffer=64M", "upload-delay=200", "commit-interval=100"});
  ASSERT_TRUE(nbdkit_->start()) << nbdkit_->log();
  std::string out;
  ASSERT_EQ(runCommand(fio(kFirstPass, ""), &out), 0) << out;

  // The second pass at a bounded rate (~8 s): time for the snapshot's answer (it
  // stores nearly the whole volume) well before the pass ends, on a slow build too.
  std::string log = dir_ / "writes";
  auto second = std::async(std::launch::async, [&] {
    std::string o;
    int rc = runCommand(
        fio(kSecondPass, "--rate_iops=1000 --clocksource=clock_gettime --write_lat_log=" + log +
                " --log_offset=1 --log_alternate_epoch=1 --log_alternate_epoch_clock_id=1"), &o);
    return std::make_pair(rc, o);
  });
  // The request goes once a fifth of the blocks hold the second pass (fio takes a
  // while to start, longer on a loaded machine).
  {
    NbdClient c;
    ASSERT_TRUE(c.connect(nbdkit_->socket(), "vol")) << c.error();
    std::vector<uint8_t> now(kSize);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      ASSERT_TRUE(c.pread(now.data(), kSize, 0)) << c.error();
      uint64_t done = 0;
      for (uint64_t b = 0; b < kBlocks; ++b) done += now[b * kBlock] == (kSecondPass >> 24);
      if (done >= kBlocks / 5) break;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "fio's second pass did not get going";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  int64_t requested = nowMs();
  std::string answer =
      adminRequest(dir_ / "state/admin.sock", R"({"op":"snapshot","name":"vol","snapshot":"mid-pass"})");
  int64_t answered = nowMs();
  auto [rc, fioOut] = second.get();
  ASSERT_EQ(rc, 0) << fioOut;
  ASSERT_NE(answer.find("\"ok\":true"), std::string::npos) << answer;

  std::map<uint64_t, Write> writes = readWriteLog(log + "_lat.1.log");
  ASSERT_EQ(writes.size(), kBlocks) << "fio's log of the second pass is incomplete";

  // The snapshot's content, through a volume made from it on the same gateway.
  std::string created = adminRequest(
      dir_ / "state/admin.sock", R"({"op":"create","name":"copy","source":{"volume":"vol","snapshot":"mid-pass"}})");
  ASSERT_NE(created.find("\"ok\":true"), std::string::npos) << created;
  std::vector<uint8_t> snap(kSize);
  {
    NbdClient c;
    ASSERT_TRUE(c.connect(nbdkit_->socket(), "copy")) << c.error();
    ASSERT_TRUE(c.pread(snap.data(), kSize, 0)) << c.error();
  }

  uint64_t first = 0, second2 = 0, mustBeNew = 0, mustBeOld = 0, bad = 0;
  for (uint64_t b = 0; b < kBlocks; ++b) {
    uint64_t offset = b * kBlock;
    const uint8_t* got = snap.data() + offset;
    bool old = std::memcmp(got, expectedBlock(kFirstPass, offset).data(), kBlock) == 0;
    bool neu = std::memcmp(got, expectedBlock(kSecondPass, offset).data(), kBlock) == 0;
    const Write& w = writes[offset];
    bool before = w.completedMs + kSlackMs < static_cast<double>(requested);
    bool after = w.issuedMs > static_cast<double>(answered) + kSlackMs;
    mustBeNew += before;
    mustBeOld += after;
    first += old;
    second2 += neu;
    if ((!old && !neu) || (before && !neu) || (after && !old)) {
      if (++bad <= 5) {
        ADD_FAILURE() << "block at " << offset << ": "
                      << (old   ? "first pass"
                          : neu ? "second pass"
                                : "neither pass")
                      << ", write issued " << (w.issuedMs - requested) << " ms and completed "
                      << (w.completedMs - requested) << " ms after the request (answered after "
                      << (answered - requested) << " ms)";
      }
    }
  }
  EXPECT_EQ(bad, 0u);
  // The snapshot fell inside the pass, and the log pinned enough blocks either side
  // for the check above to mean something.
  EXPECT_GT(mustBeNew, kBlocks / 10) << "completed before the request";
  EXPECT_GT(mustBeOld, kBlocks / 10) << "issued after the answer (answered after " << (answered - requested) << " ms)";
  std::cout << "snapshot answered in " << (answered - requested) << " ms; blocks: " << second2
            << " from the second pass (" << mustBeNew << " had to be), " << first << " from the first (" << mustBeOld
            << " had to be)\n";

  // The volume itself goes on: it holds the whole second pass.
  std::vector<uint8_t> live(kSize);
  {
    NbdClient c;
    ASSERT_TRUE(c.connect(nbdkit_->socket(), "vol")) << c.error();
    ASSERT_TRUE(c.pread(live.data(), kSize, 0)) << c.error();
  }
  for (uint64_t b = 0; b < kBlocks; ++b) {
    ASSERT_EQ(std::memcmp(live.data() + b * kBlock, expectedBlock(kSecondPass, b * kBlock).data(), kBlock), 0)
        << "volume block " << b;
  }
  EXPECT_EQ(nbdkit_->stop(), 0) << nbdkit_->log();
}

}  // namespace
}  // namespace ferry::testing
