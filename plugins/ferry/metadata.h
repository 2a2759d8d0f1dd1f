#pragma once
// The gateway's metadata in SQLite (WAL, synchronous=FULL): the volume table and, per
// volume, the rows of chunks that are cached, dirty or stored remotely. Chunks with no
// row are zero, uncached and clean. Schema in docs/volume-engine.md.
//
// Thread-safe: one mutex serializes every call.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ferry/sqlite.h"
#include "ferry/status.h"

namespace ferry {

inline constexpr int kSchemaVersion = 5;

struct VolumeRow {
  int64_t id = 0;
  std::string name;
  uint64_t size = 0;
  uint64_t chunkSize = 0;
  uint64_t epoch = 0;  // last lease epoch this gateway took for the volume
  int64_t createdUnix = 0;
  // A volume made from a snapshot, until every chunk is its own (hydrated): the
  // snapshot's volume and id, and its store (empty: the gateway's). Empty otherwise.
  std::string sourceVolume, sourceSnapshot, sourceStore;
};

// Chunk flags as stored: a bit set.
enum ChunkFlags : uint32_t {
  kFlagCached = 1,      // the cache file holds the chunk's current content
  kFlagDirty = 2,       // content is newer than the store's newest generation
  kFlagRemoteZero = 4,  // the newest generation in the store is a zero tombstone
  kFlagJournaled = 8,   // dirty, and every change since that generation is in the journal
  // dirty and not cached whole: that generation, the changes in the journal, then the
  // pages in ChunkRow::pages from the cache file (Where::kPatched)
  kFlagPatched = 16,
  // dirty and cached: the cache file may hold writes the page map lacks (set on every
  // such row by the start after a crash: markChangesUnsure), so it leaves the cache
  // only stored whole (4)
  kFlagCacheOnly = 32,
  // clean and stored, not cached: the cache file may still hold its content, which a
  // start after a crash could not trust; cached again if its bytes there match `crc`
  // (set by markChangesUnsure on a clean cached row with a crc; 5)
  kFlagVerify = 64,
};

struct ChunkRow {
  uint64_t index = 0;
  uint64_t remoteGen = 0;  // newest generation in the store, 0 = none
  uint32_t flags = 0;
  // kFlagPatched: a bitmap of the pages in the cache file; kFlagDirty | kFlagCached
  // without kFlagJournaled: of the pages changed since the store had them (empty from
  // a gateway that did not keep them: all of them)
  std::vector<uint64_t> pages;
  // The CRC-32C of generation remoteGen's content, when this gateway knows it (it
  // stored or fetched that generation whole); nullopt otherwise (5).
  std::optional<uint32_t> crc;
};

class Metadata {
 public:
  // Opens DIR/ferry.db, creating it (and DIR) when create is true. A database from a
  // newer schema, or a file that is not a database, is refused with a clear error.
  static Result<std::unique_ptr<Metadata>> open(const std::string& stateDir, bool create);

  const std::string& gatewayId() const { return gatewayId_; }

  Result<std::vector<VolumeRow>> volumes();
  // The volume and its first chunk rows (a volume adopted from the store, or made from
  // a snapshot) in one transaction: a crash never leaves the one without the other.
  Result<VolumeRow> addVolume(const std::string& name, uint64_t size, uint64_t chunkSize, int64_t createdUnix,
                              const std::string& sourceVolume = "", const std::string& sourceSnapshot = "",
                              const std::string& sourceStore = "", const std::vector<ChunkRow>& rows = {});
  // The volume no longer needs its source (hydrated).
  Status clearSource(int64_t id);
  Status removeVolume(int64_t id);
  Status setEpoch(int64_t id, uint64_t epoch);
  // Small facts beside the volumes (the meta table): "" when the key is absent.
  Result<std::string> getMeta(const std::string& key);
  Status setMeta(const std::string& key, const std::string& value);
  Status deleteMeta(const std::string& key);
  // The meta values whose keys start with prefix, by key.
  Result<std::vector<std::pair<std::string, std::string>>> metaWithPrefix(const std::string& prefix);

  Result<std::vector<ChunkRow>> chunks(int64_t volumeId);
  // Upserts every row in one transaction; rows with no flags and no generation are
  // deleted. Durable (fsync) when it returns OK.
  Status writeChunks(int64_t volumeId, const std::vector<ChunkRow>& rows);
  // After a crash, a cached chunk's cache may hold writes its row lacks (they came
  // after its last commit): the volume's chunks `only` lists (WrittenMap), or all of
  // them when nothing tells. Each such dirty cached row gets kFlagCacheOnly (its whole
  // upload stores them); each such clean cached row stops saying "cached" (read from
  // the store, it cannot show such a write and later lose it to an eviction), and gets
  // kFlagVerify if it has a crc (cached again once its bytes are found to match it).
  // Durable.
  Status markChangesUnsure(int64_t volumeId, const std::optional<std::vector<uint64_t>>& only);

 private:
  explicit Metadata(SqliteDb db) : db_(std::move(db)) {}
  Status migrate();
  // REQUIRES: mu_ held, inside a transaction.
  Status upsertChunks(int64_t volumeId, const std::vector<ChunkRow>& rows);

  std::mutex mu_;
  SqliteDb db_;  // GUARDED_BY(mu_)
  std::string gatewayId_;
};

}  // namespace ferry
