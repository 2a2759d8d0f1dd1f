#include "format.h"

#include <gtest/gtest.h>

#include <ctime>
#include <future>
#include <optional>
#include <thread>

#include "lease.h"
#include "test_util.h"

namespace ferry {

TEST(FormatTest, ChunkKeysRoundTripAndSortByIndex) {
  std::string k = chunkKey("vol", 0x12, 0x300000001);
  EXPECT_EQ(k, "volumes/vol/chunks/0000000000000012.0000000300000001");
  auto parsed = parseChunkKey(std::string_view(k).substr(chunksPrefix("vol").size()));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->index, 0x12u);
  EXPECT_EQ(parsed->generation, 0x300000001u);
  EXPECT_LT(chunkKey("v", 1, 9), chunkKey("v", 2, 1));
}

TEST(FormatTest, RejectsMalformedChunkKeys) {
  EXPECT_FALSE(parseChunkKey(""));
  EXPECT_FALSE(parseChunkKey("0000000000000012-0000000300000001"));
  EXPECT_FALSE(parseChunkKey("000000000000001G.0000000300000001"));
  EXPECT_FALSE(parseChunkKey("0000000000000012.0000000000000000"));  // generation 0 is never written
  EXPECT_FALSE(parseChunkKey("0000000000000012.0000000300000001.tmp"));
}

TEST(FormatTest, HeaderRoundTripAndVersionCheck) {
  VolumeHeader h{kFormatVersion, "v", 1 << 30, 1 << 20, 5};
  auto d = decodeHeader(encodeHeader(h));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->size, h.size);
  EXPECT_EQ(d->chunkSize, h.chunkSize);
  EXPECT_EQ(decodeHeader("{\"format\":2,\"name\":\"v\",\"size\":1024,\"chunk_size\":1048576}").status().code(),
            Code::kCorruption);
  EXPECT_EQ(decodeHeader("not json").status().code(), Code::kCorruption);
  EXPECT_EQ(decodeHeader("{\"format\":1,\"name\":\"v\",\"size\":1000,\"chunk_size\":1048576}").status().code(),
            Code::kCorruption);
}

TEST(FormatTest, GeometryLimits) {
  EXPECT_TRUE(checkGeometry(1 << 30, 1 << 20));
  EXPECT_FALSE(checkGeometry(0, 1 << 20));
  EXPECT_FALSE(checkGeometry(1000, 1 << 20));
  EXPECT_FALSE(checkGeometry(1 << 30, 3 << 20));
  EXPECT_FALSE(checkGeometry(1 << 30, 4096));
}

TEST(LeaseTest, EncodeDecode) {
  LeaseInfo l{"gw", "host", 7, 123};
  auto d = decodeLease(encodeLease(l));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->owner, "gw");
  EXPECT_EQ(d->epoch, 7u);
  EXPECT_EQ(d->expiresUnix, 123);
  EXPECT_EQ(d->waitingOutTtl, 0);
  EXPECT_EQ(encodeLease(l).find("waiting_out"), std::string::npos) << "absent unless waiting";
  l.waitingOutTtl = 30;
  d = decodeLease(encodeLease(l));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->waitingOutTtl, 30);
  EXPECT_FALSE(decodeLease("{}"));
}

// A gateway taking a lease over marks it while it waits out the old owner, and
// clears the mark once done. Restarted before that (killed in the wait), it finds its
// own lease marked and waits again: the old owner may still be changing the volume.
TEST(LeaseTest, ARestartInTheMiddleOfATakeoverWaitsAgain) {
  testing::TempDir dir;
  auto store = openStore("file://" + (dir / "store") + "?create");
  ASSERT_TRUE(store) << store.status().toString();
  ObjectStore& s = *store.value();
  LeaseKeeper a(s, "vol", "aaaa", 3);
  ASSERT_TRUE(a.acquire(0, false));

  LeaseKeeper b(s, "vol", "bbbb", 3);
  auto taking = std::async(std::launch::async, [&] { return b.acquire(0, true); });
  std::optional<LeaseInfo> during;
  for (int i = 0; i < 200 && !(during && during->owner == "bbbb"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto l = readLease(s, "vol");
    if (l) during = l.value();
  }
  ASSERT_TRUE(during && during->owner == "bbbb");
  EXPECT_EQ(during->waitingOutTtl, 3) << "the wait is not marked in the lease";
  ASSERT_TRUE(taking.get());
  auto after = readLease(s, "vol");
  ASSERT_TRUE(after && after.value());
  EXPECT_EQ(after.value()->waitingOutTtl, 0) << "the mark stays after the wait";

  // b's own lease, unmarked (a restart after the wait, or of an ordinary owner): at once.
  LeaseKeeper again(s, "vol", "bbbb", 3);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(again.acquire(0, false));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1500));

  // What b's lease says when b is killed in the middle of its wait: its restart waits
  // out the old owner's 3 s ttl again (3/4 of it).
  LeaseInfo killed{"bbbb", "host", 9, static_cast<int64_t>(std::time(nullptr)) + 3, 3, 3};
  ASSERT_TRUE(s.put(leaseKey("vol"), bytesOf(encodeLease(killed))));
  LeaseKeeper restarted(s, "vol", "bbbb", 3);
  t0 = std::chrono::steady_clock::now();
  auto epoch = restarted.acquire(0, false);
  ASSERT_TRUE(epoch) << epoch.status().toString();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2250)) << "it did not wait again";
  EXPECT_EQ(epoch.value(), 10u);
  auto done = readLease(s, "vol");
  ASSERT_TRUE(done && done.value());
  EXPECT_EQ(done.value()->waitingOutTtl, 0);

  // A third gateway finding b killed in the middle of waiting out an owner with a
  // longer ttl (6 s) waits out that one's, not b's 3 s.
  LeaseInfo waiting{"bbbb", "host", 11, static_cast<int64_t>(std::time(nullptr)) + 3, 3, 6};
  ASSERT_TRUE(s.put(leaseKey("vol"), bytesOf(encodeLease(waiting))));
  LeaseKeeper third(s, "vol", "cccc", 3);
  t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(third.acquire(0, true));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(4500)) << "it waited out b's ttl only";
}

}  // namespace ferry
