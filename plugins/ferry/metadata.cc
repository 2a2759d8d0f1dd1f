#include "metadata.h"

#include <sys/stat.h>

#include <filesystem>
#include <random>

namespace ferry {
namespace {

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE volumes(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL,
  epoch INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL);
CREATE TABLE chunks(
  volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  remote_gen INTEGER NOT NULL,
  flags INTEGER NOT NULL,
  PRIMARY KEY(volume_id, idx)) WITHOUT ROWID;
)sql";

// A page bitmap as stored: each 64-bit word as 16 hex digits.
std::string encodePages(const std::vector<uint64_t>& bits) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(bits.size() * 16);
  for (uint64_t w : bits) {
    for (int shift = 60; shift >= 0; shift -= 4) s.push_back(kHex[(w >> shift) & 15]);
  }
  return s;
}

Result<std::vector<uint64_t>> decodePages(const std::string& s) {
  if (s.size() % 16 != 0)
    return Status::corruption("chunk metadata: a page bitmap of " + std::to_string(s.size()) + " digits");
  std::vector<uint64_t> bits(s.size() / 16, 0);
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return Status::corruption("chunk metadata: a page bitmap that is not hex");
    bits[i / 16] = bits[i / 16] << 4 | static_cast<uint64_t>(v);
  }
  return bits;
}

// Dirty cached rows get kFlagCacheOnly (Metadata::markChangesUnsure); `andWhere` narrows
// the rows.
std::string markUnsureSql(const std::string& andWhere = "") {
  const uint32_t dirtyCached = kFlagCached | kFlagDirty;
  return "UPDATE chunks SET flags = flags | " + std::to_string(kFlagCacheOnly) + " WHERE (flags & " +
         std::to_string(dirtyCached) + ") = " + std::to_string(dirtyCached) + andWhere;
}

std::string randomId() {
  std::random_device rd;
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; ++i) s.push_back(kHex[rd() % 16]);
  return s;
}

}  // namespace

Result<std::unique_ptr<Metadata>> Metadata::open(const std::string& stateDir, bool create) {
  std::error_code ec;
  if (!std::filesystem::is_directory(stateDir, ec)) {
    if (!create) return Status::notFound("state directory " + stateDir + " does not exist");
    std::filesystem::create_directories(stateDir, ec);
    if (ec) return errnoStatus("create state directory " + stateDir, ec.value());
  }
  std::string path = stateDir + "/ferry.db";
  bool exists = std::filesystem::exists(path, ec);
  if (!exists && !create) return Status::notFound("metadata database " + path + " does not exist");
  auto db = SqliteDb::open(path, true);
  if (!db) return db.status();
  std::unique_ptr<Metadata> m(new Metadata(std::move(db).value()));
  if (Status s = m->migrate(); !s) return s.withContext("state directory " + stateDir);
  return m;
}

Status Metadata::migrate() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("PRAGMA user_version");
  if (!st) return st.status();
  auto row = st->step();
  if (!row) return row.status();
  int64_t version = st->int64(0);
  if (version > kSchemaVersion) {
    return Status::corruption("metadata schema " + std::to_string(version) +
                              " is newer than this Ferry understands (" + std::to_string(kSchemaVersion) + ")");
  }
  if (version == 0) {
    // A database with tables but no version is not ours.
    auto tables = db_.prepare("SELECT count(*) FROM sqlite_master");
    if (!tables) return tables.status();
    if (auto r = tables->step(); !r) return r.status();
    if (tables->int64(0) != 0) return Status::corruption("ferry.db holds tables Ferry did not write");
    if (Status s = db_.exec("BEGIN"); !s) return s;
    Status s = db_.exec(kSchemaV1);
    if (s) {
      auto ins = db_.prepare("INSERT INTO meta(key, value) VALUES('gateway_id', $1)");
      s = ins ? ins->bind(1, randomId()).run() : ins.status();
    }
    if (s) s = db_.exec("PRAGMA user_version=1; COMMIT");
    if (!s) {
      db_.exec("ROLLBACK");
      return s;
    }
  }
  if (version < 2) {
    // 2: volumes made from a snapshot remember it until they are hydrated.
    Status s = db_.exec(
        "BEGIN; ALTER TABLE volumes ADD COLUMN source_volume TEXT NOT NULL DEFAULT ''; "
        "ALTER TABLE volumes ADD COLUMN source_snapshot TEXT NOT NULL DEFAULT ''; "
        "ALTER TABLE volumes ADD COLUMN source_store TEXT NOT NULL DEFAULT ''; PRAGMA user_version=2; COMMIT");
    if (!s) {
      db_.exec("ROLLBACK");
      return s.withContext("migrate ferry.db to schema 2");
    }
  }
  if (version < 3) {
    // 3: chunks patched in the cache file (a few pages of a chunk not cached whole).
    Status s =
        db_.exec("BEGIN; ALTER TABLE chunks ADD COLUMN pages TEXT NOT NULL DEFAULT ''; PRAGMA user_version=3; COMMIT");
    if (!s) {
      db_.exec("ROLLBACK");
      return s.withContext("migrate ferry.db to schema 3");
    }
  }
  if (version < 4) {
    // 4: kFlagCacheOnly, which a start after a crash sets (markChangesUnsure); before,
    // every start took every dirty cached chunk as such. Set on those of this database:
    // the run that wrote it may have started after a crash.
    Status s = db_.exec("BEGIN; " + markUnsureSql() + "; PRAGMA user_version=4; COMMIT");
    if (!s) {
      db_.exec("ROLLBACK");
      return s.withContext("migrate ferry.db to schema 4");
    }
  }
  if (version < 5) {
    // 5: the CRC-32C of a chunk's stored generation, to verify its cache after a crash.
    Status s = db_.exec("BEGIN; ALTER TABLE chunks ADD COLUMN crc INTEGER; PRAGMA user_version=5; COMMIT");
    if (!s) {
      db_.exec("ROLLBACK");
      return s.withContext("migrate ferry.db to schema 5");
    }
  }
  auto id = db_.prepare("SELECT value FROM meta WHERE key='gateway_id'");
  if (!id) return id.status();
  auto r = id->step();
  if (!r) return r.status();
  if (!r.value()) return Status::corruption("ferry.db has no gateway id");
  gatewayId_ = id->text(0);
  return Status::ok();
}

Result<std::vector<VolumeRow>> Metadata::volumes() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "SELECT id, name, size, chunk_size, epoch, created, source_volume, source_snapshot, source_store FROM volumes "
      "ORDER BY name");
  if (!st) return st.status();
  std::vector<VolumeRow> out;
  for (;;) {
    auto r = st->step();
    if (!r) return r.status();
    if (!r.value()) break;
    out.push_back({st->int64(0), st->text(1), static_cast<uint64_t>(st->int64(2)),
                   static_cast<uint64_t>(st->int64(3)), static_cast<uint64_t>(st->int64(4)), st->int64(5),
                   st->text(6), st->text(7), st->text(8)});
  }
  return out;
}

Result<VolumeRow> Metadata::addVolume(const std::string& name, uint64_t size, uint64_t chunkSize,
                                      int64_t createdUnix, const std::string& sourceVolume,
                                      const std::string& sourceSnapshot, const std::string& sourceStore,
                                      const std::vector<ChunkRow>& rows) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "INSERT INTO volumes(name, size, chunk_size, epoch, created, source_volume, source_snapshot, source_store) "
      "VALUES($1, $2, $3, 0, $4, $5, $6, $7)");
  if (!st) return st.status();
  st->bind(1, name).bind(2, static_cast<int64_t>(size)).bind(3, static_cast<int64_t>(chunkSize)).bind(4, createdUnix);
  st->bind(5, sourceVolume).bind(6, sourceSnapshot).bind(7, sourceStore);
  if (Status s = db_.exec("BEGIN IMMEDIATE"); !s) return s.withContext("add volume " + name);
  Status s = st->run();
  int64_t id = db_.lastInsertId();
  if (s) s = upsertChunks(id, rows);
  if (s) s = db_.exec("COMMIT");
  if (!s) {
    db_.exec("ROLLBACK");
    return s.withContext("add volume " + name);
  }
  return VolumeRow{id, name, size, chunkSize, 0, createdUnix, sourceVolume, sourceSnapshot, sourceStore};
}

Status Metadata::clearSource(int64_t id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("UPDATE volumes SET source_volume='', source_snapshot='', source_store='' WHERE id=$1");
  if (!st) return st.status();
  return st->bind(1, id).run();
}

Status Metadata::removeVolume(int64_t id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("DELETE FROM volumes WHERE id=$1");
  if (!st) return st.status();
  return st->bind(1, id).run();
}

Status Metadata::setEpoch(int64_t id, uint64_t epoch) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("UPDATE volumes SET epoch=$1 WHERE id=$2");
  if (!st) return st.status();
  return st->bind(1, static_cast<int64_t>(epoch)).bind(2, id).run();
}

Result<std::string> Metadata::getMeta(const std::string& key) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT value FROM meta WHERE key=$1");
  if (!st) return st.status();
  st->bind(1, key);
  auto r = st->step();
  if (!r) return r.status();
  return r.value() ? st->text(0) : std::string();
}

Status Metadata::setMeta(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("INSERT INTO meta(key, value) VALUES($1, $2) ON CONFLICT(key) DO UPDATE SET value=$2");
  if (!st) return st.status();
  return st->bind(1, key).bind(2, value).run();
}

Status Metadata::markChangesUnsure(int64_t volumeId, const std::optional<std::vector<uint64_t>>& only) {
  std::lock_guard lock(mu_);
  const std::string cached = std::to_string(kFlagCached), dirtyCached = std::to_string(kFlagCached | kFlagDirty);
  const std::string which = only ? " AND idx=$2" : "";
  // Dirty cached rows: kFlagCacheOnly. Clean cached rows stop saying "cached": their
  // bytes are read from the store again.
  auto unsure = db_.prepare(markUnsureSql(" AND volume_id=$1" + which));
  if (!unsure) return unsure.status();
  // (kFlagVerify: when its crc tells, of a stored generation, what the cache should
  // hold.)
  auto drop =
      db_.prepare("UPDATE chunks SET flags = (flags & ~" + cached + ") | CASE WHEN crc IS NOT NULL AND (flags & " +
                  std::to_string(kFlagRemoteZero) + ") = 0 AND remote_gen != 0 THEN " + std::to_string(kFlagVerify) +
                  " ELSE 0 END WHERE volume_id=$1" + which + " AND (flags & " + dirtyCached + ") = " + cached);
  if (!drop) return drop.status();
  if (Status s = db_.exec("BEGIN IMMEDIATE"); !s) return s;
  auto both = [&](std::optional<uint64_t> index) -> Status {
    for (auto* st : {&unsure.value(), &drop.value()}) {
      st->bind(1, volumeId);
      if (index) st->bind(2, static_cast<int64_t>(*index));
      if (Status s = st->run(); !s) return s;
    }
    return Status::ok();
  };
  Status s;
  if (!only) {
    s = both(std::nullopt);
  } else {
    for (uint64_t index : *only) {
      if (s = both(index); !s) break;
    }
  }
  if (s) s = db_.exec("COMMIT");
  if (!s) {
    db_.exec("ROLLBACK");
    return s.withContext("mark chunks written before a crash");
  }
  return Status::ok();
}

Status Metadata::deleteMeta(const std::string& key) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("DELETE FROM meta WHERE key=$1");
  if (!st) return st.status();
  return st->bind(1, key).run();
}

Result<std::vector<std::pair<std::string, std::string>>> Metadata::metaWithPrefix(const std::string& prefix) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT key, value FROM meta WHERE substr(key, 1, length($1)) = $1 ORDER BY key");
  if (!st) return st.status();
  st->bind(1, prefix);
  std::vector<std::pair<std::string, std::string>> out;
  for (;;) {
    auto r = st->step();
    if (!r) return r.status();
    if (!r.value()) return out;
    out.emplace_back(st->text(0), st->text(1));
  }
}

Result<std::vector<ChunkRow>> Metadata::chunks(int64_t volumeId) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT idx, remote_gen, flags, pages, crc FROM chunks WHERE volume_id=$1 ORDER BY idx");
  if (!st) return st.status();
  st->bind(1, volumeId);
  std::vector<ChunkRow> out;
  for (;;) {
    auto r = st->step();
    if (!r) return r.status();
    if (!r.value()) break;
    ChunkRow row{static_cast<uint64_t>(st->int64(0)),
                 static_cast<uint64_t>(st->int64(1)),
                 static_cast<uint32_t>(st->int64(2)),
                 {}};
    auto pages = decodePages(st->text(3));
    if (!pages) return pages.status().withContext("chunk " + std::to_string(row.index));
    row.pages = std::move(pages).value();
    if (!st->isNull(4)) row.crc = static_cast<uint32_t>(st->int64(4));
    out.push_back(std::move(row));
  }
  return out;
}

Status Metadata::writeChunks(int64_t volumeId, const std::vector<ChunkRow>& rows) {
  if (rows.empty()) return Status::ok();
  std::lock_guard lock(mu_);
  if (Status s = db_.exec("BEGIN IMMEDIATE"); !s) return s;
  if (Status s = upsertChunks(volumeId, rows); !s) {
    db_.exec("ROLLBACK");
    return s;
  }
  if (Status s = db_.exec("COMMIT"); !s) {
    db_.exec("ROLLBACK");
    return s.withContext("commit chunk metadata");
  }
  return Status::ok();
}

Status Metadata::upsertChunks(int64_t volumeId, const std::vector<ChunkRow>& rows) {
  if (rows.empty()) return Status::ok();
  auto up = db_.prepare(
      "INSERT INTO chunks(volume_id, idx, remote_gen, flags, pages, crc) VALUES($1, $2, $3, $4, $5, $6) "
      "ON CONFLICT(volume_id, idx) DO UPDATE SET remote_gen=excluded.remote_gen, flags=excluded.flags, "
      "pages=excluded.pages, crc=excluded.crc");
  if (!up) return up.status();
  auto del = db_.prepare("DELETE FROM chunks WHERE volume_id=$1 AND idx=$2");
  if (!del) return del.status();
  for (const ChunkRow& r : rows) {
    Status s;
    if (r.remoteGen == 0 && r.flags == 0) {
      s = del->bind(1, volumeId).bind(2, static_cast<int64_t>(r.index)).run();
    } else {
      up->bind(1, volumeId)
          .bind(2, static_cast<int64_t>(r.index))
          .bind(3, static_cast<int64_t>(r.remoteGen))
          .bind(4, static_cast<int64_t>(r.flags))
          .bind(5, encodePages(r.pages));
      if (r.crc)
        up->bind(6, static_cast<int64_t>(*r.crc));
      else
        up->bindNull(6);
      s = up->run();
    }
    if (!s) return s.withContext("write chunk metadata");
  }
  return Status::ok();
}

}  // namespace ferry
