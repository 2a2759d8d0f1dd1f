#include "ferry/strings.h"

#include <gtest/gtest.h>

namespace ferry {

TEST(ParseSizeTest, AcceptsNbdkitSuffixes) {
  EXPECT_EQ(parseSize("4096").value(), 4096u);
  EXPECT_EQ(parseSize("256M").value(), 256u << 20);
  EXPECT_EQ(parseSize("10G").value(), 10ull << 30);
  EXPECT_EQ(parseSize("1t").value(), 1ull << 40);
  EXPECT_EQ(parseSize("64k").value(), 64u << 10);
  EXPECT_EQ(parseSize("2MiB").value(), 2u << 20);
}

TEST(ParseSizeTest, RejectsGarbageAndOverflow) {
  EXPECT_FALSE(parseSize(""));
  EXPECT_FALSE(parseSize("M"));
  EXPECT_FALSE(parseSize("12X"));
  EXPECT_FALSE(parseSize("1GG"));
  EXPECT_FALSE(parseSize("99999999999999999999"));
  EXPECT_FALSE(parseSize("100000000E"));
}

TEST(VolumeNameTest, RefusesPathsAndOddCharacters) {
  EXPECT_TRUE(checkVolumeName("vol-1.data_x"));
  EXPECT_FALSE(checkVolumeName(""));
  EXPECT_FALSE(checkVolumeName("a/b"));
  EXPECT_FALSE(checkVolumeName(".."));
  EXPECT_FALSE(checkVolumeName("a..b"));
  EXPECT_FALSE(checkVolumeName("-x"));
  EXPECT_FALSE(checkVolumeName("sp ace"));
  EXPECT_FALSE(checkVolumeName(std::string(65, 'a')));
  EXPECT_NE(checkVolumeName("a/b").message().find("'a/b'"), std::string::npos);
}

TEST(QueryTest, DecodesPairs) {
  auto q = parseQuery("endpoint=http%3A%2F%2Fh%3A1&region=us-east-1&flag");
  EXPECT_EQ(q["endpoint"], "http://h:1");
  EXPECT_EQ(q["region"], "us-east-1");
  EXPECT_TRUE(q.count("flag"));
  EXPECT_EQ(percentDecode("%4"), "%4");
}

}  // namespace ferry

#include "ferry/metrics_text.h"

namespace ferry {
namespace {

TEST(MetricsTextTest, WritesFamiliesSamplesAndEscapes) {
  MetricsText m;
  m.family("ferry_requests_total", "counter", "Requests\nby code.");
  m.sample("ferry_requests_total", 3, {{"code", "2xx"}});
  m.sample("ferry_requests_total", 0.5, {{"path", "a\"b\\c"}});
  m.family("ferry_up", "gauge", "Up.");
  m.sample("ferry_up", 1);
  EXPECT_EQ(m.text(),
            "# HELP ferry_requests_total Requests\\nby code.\n"
            "# TYPE ferry_requests_total counter\n"
            "ferry_requests_total{code=\"2xx\"} 3\n"
            "ferry_requests_total{path=\"a\\\"b\\\\c\"} 0.5\n"
            "# HELP ferry_up Up.\n# TYPE ferry_up gauge\nferry_up 1\n");
}

}  // namespace
}  // namespace ferry
