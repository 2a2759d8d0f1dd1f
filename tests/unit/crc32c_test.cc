// crc32c: the published check values (RFC 3720, appendix B.4), and the hardware path
// agrees with the table on every length and alignment, in pieces too.
#include "crc32c.h"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

#include "test_util.h"

namespace ferry {
namespace {

std::span<const uint8_t> bytesOf(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Crc32cTest, GivesThePublishedCheckValues) {
  EXPECT_EQ(crc32c(bytesOf("123456789")), 0xe3069283u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff), up(32), down(32);
  for (uint8_t i = 0; i < 32; ++i) {
    up[i] = i;
    down[i] = static_cast<uint8_t>(31 - i);
  }
  EXPECT_EQ(crc32c(zeros), 0x8a9136aau);
  EXPECT_EQ(crc32c(ones), 0x62a8ab43u);
  EXPECT_EQ(crc32c(up), 0x46dd794eu);
  EXPECT_EQ(crc32c(down), 0x113fdb5cu);
  EXPECT_EQ(crc32c({}), 0u);
  for (const auto* v : {&zeros, &ones, &up, &down}) EXPECT_EQ(crc32cPortable(*v), crc32c(*v));
}

TEST(Crc32cTest, EveryLengthAndAlignmentAgreesWithTheTableAndAcrossPieces) {
  const std::vector<uint8_t> data = testing::randomBytes(4096 + 64, 7);
  const std::span<const uint8_t> all(data);
  for (size_t at = 0; at < 9; ++at) {
    for (size_t len : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{63}, size_t{4096}}) {
      auto piece = all.subspan(at, len);
      const uint32_t whole = crc32c(piece);
      EXPECT_EQ(whole, crc32cPortable(piece)) << at << " " << len;
      const size_t half = len / 2;
      EXPECT_EQ(crc32c(piece.subspan(half), crc32c(piece.first(half))), whole) << at << " " << len;
    }
  }
  std::vector<uint8_t> changed = data;
  changed[1000] ^= 1;
  EXPECT_NE(crc32c(changed), crc32c(data)) << "one bit changed, same checksum";
}

}  // namespace
}  // namespace ferry
