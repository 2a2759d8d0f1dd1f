#include "format.h"

#include <gtest/gtest.h>

#include "lease.h"

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
  EXPECT_FALSE(decodeLease("{}"));
}

}  // namespace ferry
