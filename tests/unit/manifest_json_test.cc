// Snapshot manifests: the text nlohmann's DOM wrote, read back without one.
#include <gtest/gtest.h>

#include <cstdint>

#include <nlohmann/json.hpp>

#include "format.h"

namespace ferry {
namespace {

constexpr uint64_t kChunk = 64 << 10;

// The manifest as format 1 has always spelled it: an nlohmann object, dumped.
std::string domText(const SnapshotManifest& m) {
  nlohmann::json chunks = nlohmann::json::array();
  for (const ChunkKey& c : m.chunks) chunks.push_back({c.index, c.generation});
  nlohmann::json j = {{"format", m.format},        {"volume", m.volume},       {"snapshot", m.id}, {"size", m.size},
                      {"chunk_size", m.chunkSize}, {"created", m.createdUnix}, {"chunks", chunks}};
  if (!m.sourceStore.empty()) j["source_store"] = m.sourceStore;
  return j.dump();
}

TEST(ManifestTest, WritesTheTextTheDomWrote) {
  SnapshotManifest m{kFormatVersion, "vol", "rp-0000019ad3c8a1f0", uint64_t{2} << 30, kChunk, 1764090000, {}};
  EXPECT_EQ(encodeManifest(m), domText(m));  // no chunks
  for (uint64_t i = 0; i < 16384; i += 3) m.chunks.push_back({i, (uint64_t{7} << 32) | (i + 1)});
  m.chunks.push_back({16384, UINT64_MAX >> 1});
  EXPECT_EQ(encodeManifest(m), domText(m));
  m.sourceStore = "s3://bucket/pre \"fix\"?endpoint=http://127.0.0.1:7480&region=x\\y";
  m.id = std::string("snap\tshot\x01\x1f\x7f\0", 13) + "\xc3\xa9\xe2\x82\xac";  // controls, NUL, é, €
  m.createdUnix = -1764090000;
  EXPECT_EQ(encodeManifest(m), domText(m));
  m.createdUnix = INT64_MIN;
  EXPECT_EQ(encodeManifest(m), domText(m));
  auto back = decodeManifest(encodeManifest(m));
  ASSERT_TRUE(back) << back.status().toString();
  EXPECT_EQ(back.value().id, m.id);
  EXPECT_EQ(back.value().createdUnix, INT64_MIN);
  EXPECT_EQ(back.value().chunks.size(), m.chunks.size());
}

TEST(ManifestTest, RoundTripsAndSkipsFieldsItDoesNotKnow) {
  SnapshotManifest m{kFormatVersion, "vol", "s", 1 << 20, kChunk, -5, {{0, 5}, {3, 9}}, "file:///elsewhere"};
  auto back = decodeManifest(encodeManifest(m));
  ASSERT_TRUE(back) << back.status().toString();
  EXPECT_EQ(back.value().volume, "vol");
  EXPECT_EQ(back.value().id, "s");
  EXPECT_EQ(back.value().size, 1u << 20);
  EXPECT_EQ(back.value().chunkSize, kChunk);
  EXPECT_EQ(back.value().createdUnix, -5);
  EXPECT_EQ(back.value().sourceStore, "file:///elsewhere");
  ASSERT_EQ(back.value().chunks.size(), 2u);
  EXPECT_EQ(back.value().chunks[1].index, 3u);
  EXPECT_EQ(back.value().chunks[1].generation, 9u);

  // A later writer's extra fields, of any shape, are not this reader's business.
  nlohmann::json j = nlohmann::json::parse(encodeManifest(m));
  j["later"] = {{"nested", {1, 2, {{"chunks", "x"}}}}, {"list", nlohmann::json::array({{1, 2, 3}})}};
  j["flag"] = true;
  j["ratio"] = 0.5;
  j["none"] = nullptr;
  auto extra = decodeManifest(j.dump());
  ASSERT_TRUE(extra) << extra.status().toString();
  EXPECT_EQ(extra.value().chunks.size(), 2u);
}

TEST(ManifestTest, RefusesNonsenseWithAClearError) {
  const std::string head = R"({"format":1,"volume":"v","snapshot":"s","size":1048576,"chunk_size":65536,"created":1,)";
  struct Case {
    std::string text, error;
  };
  for (const Case& c : std::vector<Case>{
           {"", "parse"},
           {"[]", "not a JSON object"},
           {"7", "not a JSON object"},
           {R"({"format":2})", "format 2"},
           {R"({"format":1,"volume":"v"})", "missing"},
           {head + R"("chunks":[[16,1]]})", "bad chunk entry [16,1]"},      // past the end
           {head + R"("chunks":[[3,1],[2,1]]})", "bad chunk entry [2,1]"},  // not ascending
           {head + R"("chunks":[[3,1],[3,2]]})", "bad chunk entry [3,2]"},  // twice
           {head + R"("chunks":[[1,0]]})", "bad chunk entry [1,0]"},
           {head + R"("chunks":[[1,9223372036854775808]]})", "bad chunk entry"},  // the source bit
           {head + R"("chunks":[[1,2,3]]})", "not [index, generation]"},
           {head + R"("chunks":[[1]]})", "not [index, generation]"},
           {head + R"("chunks":[[-1,2]]})", "a chunk entry holds a negative number"},
           {head + R"("chunks":[[1,2.5]]})", "a chunk entry holds a fractional number"},
           {head + R"("chunks":[[1,"2"]]})", "a chunk entry holds a string"},
           {head + R"("chunks":[[1,[2]]]})", "a chunk entry holds an array"},
           {head + R"("chunks":[7]})", "a chunk entry holds a number"},
           {head + R"("chunks":[{"i":1}]})", "a chunk entry holds an object"},
           {head + R"("chunks":{}})", "field chunks holds an object"},
           {head + R"("chunks":[[1,2]]} trailing)", "parse"},
           {head + R"("chunks":[[1,2])", "parse"},
           {R"({"format":1,"volume":7,"snapshot":"s","size":1048576,"chunk_size":65536,"created":1,"chunks":[]})",
            "field volume holds a number"},
           {R"({"format":1,"volume":"v","snapshot":"s","size":-1,"chunk_size":65536,"created":1,"chunks":[]})",
            "field size holds a negative number"},
           {R"({"format":1,"volume":"v","snapshot":"s","size":1048576,"chunk_size":1000,"created":1,"chunks":[]})",
            "chunk size"},
       }) {
    auto r = decodeManifest(c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.status().code(), Code::kCorruption) << c.text;
    EXPECT_NE(r.status().message().find(c.error), std::string::npos) << c.text << ": " << r.status().toString();
  }
}

}  // namespace
}  // namespace ferry
