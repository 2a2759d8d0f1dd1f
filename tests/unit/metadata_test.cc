#include "metadata.h"

#include <gtest/gtest.h>

#include <fstream>

#include "test_util.h"

namespace ferry {
namespace {

TEST(MetadataTest, CreatesSchemaAndKeepsGatewayId) {
  testing::TempDir dir;
  std::string id;
  {
    auto m = Metadata::open(dir / "state", true);
    ASSERT_TRUE(m) << m.status().toString();
    id = m.value()->gatewayId();
    EXPECT_EQ(id.size(), 32u);
    ASSERT_TRUE(m.value()->addVolume("v1", 1 << 30, 1 << 20, 1));
  }
  auto m = Metadata::open(dir / "state", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m.value()->gatewayId(), id);
  auto vols = m.value()->volumes();
  ASSERT_TRUE(vols);
  ASSERT_EQ(vols->size(), 1u);
  EXPECT_EQ((*vols)[0].name, "v1");
  EXPECT_FALSE(m.value()->addVolume("v1", 1 << 30, 1 << 20, 1));  // unique name
}

TEST(MetadataTest, ChunkRowsUpsertAndDelete) {
  testing::TempDir dir;
  auto m = Metadata::open(dir.path(), true);
  ASSERT_TRUE(m);
  auto v = m.value()->addVolume("v", 1 << 30, 1 << 20, 1);
  ASSERT_TRUE(v);
  ASSERT_TRUE(m.value()->writeChunks(v->id, {{1, 5, kFlagCached | kFlagDirty}, {2, 0, kFlagCached}}));
  ASSERT_TRUE(m.value()->writeChunks(v->id, {{1, 6, kFlagCached}, {2, 0, 0}}));
  auto rows = m.value()->chunks(v->id);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].index, 1u);
  EXPECT_EQ((*rows)[0].remoteGen, 6u);
  EXPECT_EQ((*rows)[0].flags, uint32_t{kFlagCached});
  ASSERT_TRUE(m.value()->removeVolume(v->id));
  EXPECT_EQ(m.value()->chunks(v->id).value().size(), 0u);  // cascade
}

// A start after a crash: dirty cached rows keep their cache until stored whole; clean
// cached ones leave it, to be checked against their checksums if they have one (5).
TEST(MetadataTest, AfterACrashCleanCachedRowsWithAChecksumAreLeftToVerify) {
  testing::TempDir dir;
  auto m = Metadata::open(dir.path(), true);
  ASSERT_TRUE(m);
  auto v = m.value()->addVolume("v", 1 << 30, 1 << 20, 1);
  ASSERT_TRUE(v);
  ASSERT_TRUE(m.value()->writeChunks(v->id, {{0, 5, kFlagCached, {}, 0xdeadbeef},
                                             {1, 6, kFlagCached, {}, std::nullopt},
                                             {2, 7, kFlagCached | kFlagRemoteZero, {}, 1},
                                             {3, 8, kFlagCached | kFlagDirty, {}, 2},
                                             {4, 9, 0, {}, 3},
                                             {5, 10, kFlagCached, {}, 0}}));
  ASSERT_TRUE(m.value()->markChangesUnsure(v->id, std::nullopt));
  auto rows = m.value()->chunks(v->id).value();
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0].flags, uint32_t{kFlagVerify});
  EXPECT_EQ(rows[0].crc, 0xdeadbeefu) << "the checksum did not come back as written";
  EXPECT_EQ(rows[1].flags, 0u) << "no checksum: nothing to verify with";
  EXPECT_FALSE(rows[1].crc);
  EXPECT_EQ(rows[2].flags, uint32_t{kFlagRemoteZero});
  EXPECT_EQ(rows[3].flags, uint32_t{kFlagCached | kFlagDirty | kFlagCacheOnly});
  EXPECT_EQ(rows[4].flags, 0u);
  EXPECT_EQ(rows[5].flags, uint32_t{kFlagVerify}) << "a checksum of 0 is one";
  // With the chunks a written map names, only those.
  ASSERT_TRUE(m.value()->writeChunks(v->id, {{0, 5, kFlagCached, {}, 1}, {1, 6, kFlagCached, {}, 2}}));
  ASSERT_TRUE(m.value()->markChangesUnsure(v->id, std::vector<uint64_t>{1}));
  rows = m.value()->chunks(v->id).value();
  EXPECT_EQ(rows[0].flags, uint32_t{kFlagCached});
  EXPECT_EQ(rows[1].flags, uint32_t{kFlagVerify});
}

TEST(MetadataTest, MetaValuesAreSetReplacedAndDeletedDurably) {
  testing::TempDir dir;
  {
    auto m = Metadata::open(dir.path(), true);
    ASSERT_TRUE(m);
    EXPECT_EQ(m.value()->getMeta("adopting:v").value(), "");
    ASSERT_TRUE(m.value()->setMeta("adopting:v", "1"));
    ASSERT_TRUE(m.value()->setMeta("adopting:v", "2"));
    ASSERT_TRUE(m.value()->setMeta("adopting:w", "1"));
    ASSERT_TRUE(m.value()->deleteMeta("adopting:w"));
    ASSERT_TRUE(m.value()->deleteMeta("absent"));
  }
  auto m = Metadata::open(dir.path(), false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m.value()->getMeta("adopting:v").value(), "2");
  EXPECT_EQ(m.value()->getMeta("adopting:w").value(), "");
  EXPECT_FALSE(m.value()->gatewayId().empty());
}

// A gateway's database from before volumes could be made from a snapshot (schema 1)
// opens, keeps its rows, and records sources from then on.
TEST(MetadataTest, MigratesASchemaOneDatabase) {
  testing::TempDir dir;
  {
    auto db = SqliteDb::open(dir / "ferry.db", true);
    ASSERT_TRUE(db);
    ASSERT_TRUE(db.value().exec(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE volumes(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,"
        " chunk_size INTEGER NOT NULL, epoch INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
        "CREATE TABLE chunks(volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,"
        " idx INTEGER NOT NULL, remote_gen INTEGER NOT NULL, flags INTEGER NOT NULL,"
        " PRIMARY KEY(volume_id, idx)) WITHOUT ROWID;"
        "INSERT INTO meta VALUES('gateway_id', '0123456789abcdef0123456789abcdef');"
        "INSERT INTO volumes(name, size, chunk_size, epoch, created) VALUES('old', 1048576, 65536, 3, 1);"
        "INSERT INTO chunks VALUES(1, 2, 77, 1);"
        "INSERT INTO chunks VALUES(1, 3, 78, 3);"  // dirty and cached
        "INSERT INTO chunks VALUES(1, 4, 79, 2);"  // dirty, not cached (zeroed)
        "PRAGMA user_version=1;"));
  }
  auto m = Metadata::open(dir.path(), false);
  ASSERT_TRUE(m) << m.status().toString();
  EXPECT_EQ(m.value()->gatewayId(), "0123456789abcdef0123456789abcdef");
  auto vols = m.value()->volumes();
  ASSERT_TRUE(vols);
  ASSERT_EQ(vols->size(), 1u);
  EXPECT_EQ((*vols)[0].epoch, 3u);
  EXPECT_EQ((*vols)[0].sourceVolume, "");
  auto rows = m.value()->chunks((*vols)[0].id).value();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].remoteGen, 77u);
  // 4: the run that wrote them may have started after a crash; its dirty cached chunks
  // may hold writes their rows lack.
  EXPECT_EQ(rows[0].flags, uint32_t{kFlagCached});
  EXPECT_EQ(rows[1].flags, uint32_t{kFlagCached | kFlagDirty | kFlagCacheOnly});
  EXPECT_EQ(rows[2].flags, uint32_t{kFlagDirty});
  EXPECT_FALSE(rows[0].crc) << "5: no checksum is known of a generation stored before";
  auto made = m.value()->addVolume("copy", 1 << 20, 1 << 16, 2, "old", "snap-1");
  ASSERT_TRUE(made);
  EXPECT_EQ(m.value()->volumes().value().at(0).sourceSnapshot, "snap-1");  // "copy" sorts first
  ASSERT_TRUE(m.value()->clearSource(made->id));
  EXPECT_EQ(m.value()->volumes().value().at(0).sourceVolume, "");
}

TEST(MetadataTest, RefusesMissingDirAndForeignFiles) {
  testing::TempDir dir;
  EXPECT_EQ(Metadata::open(dir / "nope", false).status().code(), Code::kNotFound);
  {
    std::ofstream f(dir / "ferry.db");
    f << "this is not a database, it is a text file that is long enough to have a header";
  }
  auto m = Metadata::open(dir.path(), true);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.status().code(), Code::kCorruption);
  EXPECT_NE(m.status().message().find("ferry.db"), std::string::npos) << m.status().toString();
}

}  // namespace
}  // namespace ferry
