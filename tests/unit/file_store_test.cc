#include "ferry/file_store.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace ferry {
namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(FileStoreTest, PutGetRangeListRemove) {
  testing::TempDir dir;
  auto store = makeFileStore(dir.path() + "/store", true);
  ASSERT_TRUE(store) << store.status().toString();
  ObjectStore& s = *store.value();
  ASSERT_TRUE(s.put("volumes/a/chunks/1", bytes("hello world")));
  ASSERT_TRUE(s.put("volumes/a/chunks/2", bytes("")));
  ASSERT_TRUE(s.put("volumes/b/x", bytes("other")));
  EXPECT_EQ(s.getAll("volumes/a/chunks/1").value(), "hello world");

  uint8_t buf[5];
  auto n = s.get("volumes/a/chunks/1", 6, std::span(buf, 5));
  ASSERT_TRUE(n);
  EXPECT_EQ(n.value(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), 5), "world");
  EXPECT_EQ(s.get("volumes/a/chunks/1", 9, std::span(buf, 5)).value(), 2u);

  auto l = s.list("volumes/a/");
  ASSERT_TRUE(l);
  ASSERT_EQ(l->size(), 2u);
  EXPECT_EQ((*l)[0].key, "volumes/a/chunks/1");
  EXPECT_EQ((*l)[0].size, 11u);
  EXPECT_EQ((*l)[1].size, 0u);

  ASSERT_TRUE(s.remove("volumes/a/chunks/1"));
  ASSERT_TRUE(s.remove("volumes/a/chunks/1"));  // absent is fine
  EXPECT_EQ(s.getAll("volumes/a/chunks/1").status().code(), Code::kNotFound);
  EXPECT_EQ(s.list("volumes/zzz/").value().size(), 0u);
}

// A copy between two file stores is a hard link: the copy outlives the original, and
// a missing source is not found.
TEST(FileStoreTest, CopiesBetweenStoresWithoutTheBytes) {
  testing::TempDir dir;
  auto a = makeFileStore(dir.path() + "/a", true);
  auto b = makeFileStore(dir.path() + "/b", true);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a.value()->put("volumes/v/chunks/1", bytes("chunk one")));
  bool serverSide = false;
  ASSERT_TRUE(b.value()->copyFrom(*a.value(), "volumes/v/chunks/1", "volumes/w/chunks/1", &serverSide));
  EXPECT_TRUE(serverSide);
  ASSERT_TRUE(a.value()->remove("volumes/v/chunks/1"));
  EXPECT_EQ(b.value()->getAll("volumes/w/chunks/1").value(), "chunk one");
  EXPECT_EQ(b.value()->copyFrom(*a.value(), "volumes/v/chunks/9", "volumes/w/chunks/9", &serverSide).code(),
            Code::kNotFound);
  EXPECT_EQ(b.value()->copyFrom(*a.value(), "../x", "volumes/w/chunks/9", &serverSide).code(),
            Code::kInvalidArgument);
}

TEST(FileStoreTest, RefusesEscapingKeys) {
  testing::TempDir dir;
  auto store = makeFileStore(dir.path(), false);
  ASSERT_TRUE(store);
  EXPECT_EQ(store.value()->put("../evil", bytes("x")).code(), Code::kInvalidArgument);
  EXPECT_EQ(store.value()->put("/abs", bytes("x")).code(), Code::kInvalidArgument);
}

TEST(FileStoreTest, MissingRootIsUnavailableNotNotFound) {
  testing::TempDir dir;
  std::string root = dir.path() + "/store";
  EXPECT_EQ(makeFileStore(root, false).status().code(), Code::kNotFound);
  auto store = makeFileStore(root, true);
  ASSERT_TRUE(store);
  std::filesystem::rename(root, root + ".away");
  EXPECT_EQ(store.value()->put("k", bytes("x")).code(), Code::kUnavailable);
  EXPECT_EQ(store.value()->getAll("k").status().code(), Code::kUnavailable);
  std::filesystem::rename(root + ".away", root);
  EXPECT_TRUE(store.value()->put("k", bytes("x")));
}

TEST(OpenStoreTest, ParsesUrlsWithClearErrors) {
  testing::TempDir dir;
  EXPECT_TRUE(openStore("file://" + dir.path()));
  EXPECT_EQ(openStore("ftp://x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(openStore("file://relative/path").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(openStore("s3://").status().code(), Code::kInvalidArgument);
  auto noEndpoint = openStore("s3://bucket/prefix");
  EXPECT_NE(noEndpoint.status().message().find("endpoint"), std::string::npos);
  EXPECT_EQ(openStore("s3://b?endpoint=http://x&bogus=1").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry
