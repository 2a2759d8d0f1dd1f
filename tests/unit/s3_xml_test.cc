// The S3 response parsers and the SigV4 encoder. Response bodies are untrusted: besides
// the well-formed cases, every malformed body must come back as kCorruption.

#include "ferry/s3_xml.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace ferry::s3 {
namespace {

constexpr char kTwoObjects[] = R"(<?xml version="1.0" encoding="UTF-8"?>)"
                               R"(<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bk</Name>)"
                               R"(<Prefix>vol/</Prefix><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>)"
                               R"(<Contents><Key>vol/a</Key><LastModified>2026-11-25T17:03:16.756Z</LastModified>)"
                               R"(<ETag>&quot;6f5902ac237024bdd0c176cb93063dc4&quot;</ETag><Size>12</Size>)"
                               R"(<StorageClass>STANDARD</StorageClass></Contents>)"
                               R"(<Contents><Key>vol/b</Key><Size>1048576</Size></Contents>)"
                               R"(<KeyCount>2</KeyCount></ListBucketResult>)";

TEST(S3ListParseTest, ListingWithTwoObjectsGivesKeysAndSizes) {
  Result<ListPage> page = parseListObjectsV2(kTwoObjects);
  ASSERT_TRUE(page) << page.status().toString();
  ASSERT_EQ(page->objects.size(), 2u);
  EXPECT_EQ(page->objects[0].key, "vol/a");
  EXPECT_EQ(page->objects[0].size, 12u);
  EXPECT_EQ(page->objects[1].key, "vol/b");
  EXPECT_EQ(page->objects[1].size, 1048576u);
  EXPECT_FALSE(page->truncated);
  EXPECT_EQ(page->nextContinuationToken, "");
}

TEST(S3ListParseTest, TruncatedListingCarriesItsToken) {
  Result<ListPage> page = parseListObjectsV2(
      "<ListBucketResult><IsTruncated>true</IsTruncated>"
      "<Contents><Key>k1</Key><Size>1</Size></Contents>"
      "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
      "</ListBucketResult>");
  ASSERT_TRUE(page) << page.status().toString();
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->nextContinuationToken, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
  ASSERT_EQ(page->objects.size(), 1u);
}

TEST(S3ListParseTest, TruncatedListingWithoutTokenIsCorruption) {
  Result<ListPage> page = parseListObjectsV2("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>");
  ASSERT_FALSE(page);
  EXPECT_EQ(page.status().code(), Code::kCorruption);
}

TEST(S3ListParseTest, EmptyListingHasNoObjects) {
  for (const char* xml : {"<ListBucketResult><Name>bk</Name><KeyCount>0</KeyCount>"
                          "<IsTruncated>false</IsTruncated></ListBucketResult>",
                          "<ListBucketResult/>", "<ListBucketResult xmlns='x' />\n"}) {
    Result<ListPage> page = parseListObjectsV2(xml);
    ASSERT_TRUE(page) << xml << ": " << page.status().toString();
    EXPECT_TRUE(page->objects.empty());
    EXPECT_FALSE(page->truncated);
  }
}

TEST(S3ListParseTest, KeysAreDecoded) {
  Result<ListPage> page = parseListObjectsV2(
      "<ListBucketResult><Contents><Key>a&amp;b&lt;c&gt;&quot;d&apos;&#65;&#x42;&#xe9;&#x1F600;</Key>"
      "<Size> 3 </Size></Contents></ListBucketResult>");
  ASSERT_TRUE(page) << page.status().toString();
  ASSERT_EQ(page->objects.size(), 1u);
  EXPECT_EQ(page->objects[0].key, "a&b<c>\"d'AB\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_EQ(page->objects[0].size, 3u);
}

TEST(S3ListParseTest, CommentsCdataAndQuotedAttributesAreUnderstood) {
  Result<ListPage> page = parseListObjectsV2(
      "<?xml version='1.0'?>\n<!-- a <Contents> in a comment is not one -->\n"
      "<ListBucketResult a=\"x>y\" b='</Contents>'>\n"
      "  <Contents>\n    <Key><![CDATA[raw&<key>]]></Key>\n    <Size>7</Size>\n  </Contents>\n"
      "</ListBucketResult>\n");
  ASSERT_TRUE(page) << page.status().toString();
  ASSERT_EQ(page->objects.size(), 1u);
  EXPECT_EQ(page->objects[0].key, "raw&<key>");
  EXPECT_EQ(page->objects[0].size, 7u);
}

TEST(S3ListParseTest, ElementsElsewhereAreNotTakenForKeys) {
  // <Key> and <Size> count only inside a top-level <Contents>.
  Result<ListPage> page = parseListObjectsV2(
      "<ListBucketResult><Key>x</Key><CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes>"
      "<Other><Contents><Key>y</Key></Contents></Other></ListBucketResult>");
  ASSERT_TRUE(page) << page.status().toString();
  EXPECT_TRUE(page->objects.empty());
}

TEST(S3ListParseTest, MalformedListingsAreCorruption) {
  std::string nested;
  for (int i = 0; i < 100; ++i) nested += "<a>";
  const char* cases[] = {
      "",
      "   ",
      "<",
      "not xml at all",
      "<ListBucketResult>",
      "<ListBucketResult",
      "<ListBucketResult a=\"unterminated></ListBucketResult>",
      "<ListBucketResult></Other>",
      "<ListBucketResult></ListBucketResult><ListBucketResult/>",
      "<ListBucketResult/>trailing text",
      "<Error><Code>X</Code></Error>",
      "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>k</Key><Size>12x</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>k</Key><Size></Size></Contents></ListBucketResult>",
      ("<ListBucketResult><Contents><Key>k</Key><Size>99999999999999999999999</Size></Contents>"
       "</ListBucketResult>"),
      "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
      "<ListBucketResult><Contents><Key>&bogus;</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>&#0;</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>&#xD800;</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>&#x110000;</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>&#;</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>&amp</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Key><![CDATA[open</Key></ListBucketResult>",
      "<ListBucketResult><!-- open </ListBucketResult>",
      "<!DOCTYPE x [<!ENTITY e 'boom'>]><ListBucketResult/>",
      "<ListBucketResult>< Contents/></ListBucketResult>",
      "<ListBucketResult><Con\"tents/></ListBucketResult>",
  };
  for (const char* xml : cases) {
    Result<ListPage> page = parseListObjectsV2(xml);
    ASSERT_FALSE(page) << "accepted: " << xml;
    EXPECT_EQ(page.status().code(), Code::kCorruption) << xml;
  }
  Result<ListPage> tooDeep = parseListObjectsV2("<ListBucketResult>" + nested);
  EXPECT_EQ(tooDeep.status().code(), Code::kCorruption);
}

TEST(S3ListParseTest, EveryTruncationOfAListingIsCorruption) {
  const std::string full = kTwoObjects;
  for (size_t n = 0; n < full.size(); ++n) {
    Result<ListPage> page = parseListObjectsV2(full.substr(0, n));
    ASSERT_FALSE(page) << "accepted a listing cut at " << n;
    EXPECT_EQ(page.status().code(), Code::kCorruption);
  }
}

TEST(S3ListParseTest, RandomlyDamagedListingsNeverCrash) {
  // Not a fuzzer, but cheap enough to run every time (and under ASan in CI): whatever
  // the damage, the result is a page or kCorruption.
  std::mt19937 rng(42);
  const std::string full = kTwoObjects;
  const std::string alphabet = "<>/&;#x\"'=![]-? aZ09";
  for (int round = 0; round < 20000; ++round) {
    std::string xml = full;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % xml.size();
      switch (rng() % 3) {
        case 0:
          xml[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          xml.erase(at, 1 + rng() % 8);
          break;
        default:
          xml.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
      }
      if (xml.empty()) xml = "<";
    }
    Result<ListPage> page = parseListObjectsV2(xml);
    if (!page) {
      ASSERT_EQ(page.status().code(), Code::kCorruption) << xml;
    }
  }
}

TEST(S3ErrorParseTest, AwsErrorGivesCodeAndMessage) {
  Result<ErrorBody> error = parseErrorBody(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
      "<Message>Please reduce your request rate.</Message><RequestId>4442587FB7D0A2F9</RequestId>"
      "</Error>");
  ASSERT_TRUE(error) << error.status().toString();
  EXPECT_EQ(error->code, "SlowDown");
  EXPECT_EQ(error->message, "Please reduce your request rate.");
}

TEST(S3ErrorParseTest, RadosgwErrorWithEmptyMessageGivesCode) {
  Result<ErrorBody> error = parseErrorBody(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message></Message>"
      "<BucketName>bk1</BucketName><RequestId>tx0</RequestId><HostId>1008-default</HostId></Error>");
  ASSERT_TRUE(error) << error.status().toString();
  EXPECT_EQ(error->code, "NoSuchKey");
  EXPECT_EQ(error->message, "");
}

TEST(S3ErrorParseTest, MalformedErrorBodiesAreCorruption) {
  for (const char* xml :
       {"", "<html><body>502 Bad Gateway</body></html>", "<Error></Error>", "<Error><Message>no code</Message></Error>",
        "<Error><Code>X</Code>", "<Error><Code>&nope;</Code></Error>"}) {
    Result<ErrorBody> error = parseErrorBody(xml);
    ASSERT_FALSE(error) << "accepted: " << xml;
    EXPECT_EQ(error.status().code(), Code::kCorruption) << xml;
  }
}

TEST(DecodeXmlTextTest, PlainTextIsUnchanged) {
  Result<std::string> text = decodeXmlText("no entities here");
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "no entities here");
}

TEST(UriEncodeTest, KeepsUnreservedAndEncodesTheRest) {
  EXPECT_EQ(uriEncode("AZaz09-_.~", false), "AZaz09-_.~");
  EXPECT_EQ(uriEncode("vol/a b+c", true), "vol/a%20b%2Bc");
  EXPECT_EQ(uriEncode("vol/a b+c", false), "vol%2Fa%20b%2Bc");
  EXPECT_EQ(uriEncode("!*'()=&%", false), "%21%2A%27%28%29%3D%26%25");
  EXPECT_EQ(uriEncode("\xC3\xA9", false), "%C3%A9");
  EXPECT_EQ(uriEncode("", false), "");
}

TEST(CanonicalQueryTest, SortsByNameAndEncodesValues) {
  EXPECT_EQ(canonicalQuery({{"prefix", "vol/a b"}, {"list-type", "2"}, {"continuation-token", "x=y/z"}}),
            "continuation-token=x%3Dy%2Fz&list-type=2&prefix=vol%2Fa%20b");
  EXPECT_EQ(canonicalQuery({{"uploads", ""}}), "uploads=");
  EXPECT_EQ(canonicalQuery({}), "");
}

}  // namespace
}  // namespace ferry::s3
