#pragma once
// Object-store layout of a volume, format version 1. docs/FORMAT.md is the spec;
// keep the two in step.
//
//   volumes/<name>/volume.json                  header: format, size, chunk size
//   volumes/<name>/lease.json                   which gateway may write, until when
//   volumes/<name>/chunks/<index>.<generation>  chunk content (16 hex digits each);
//                                               an empty object is a zero tombstone
//   volumes/<name>/snapshots/<id>.json          a snapshot manifest: the chunk
//                                               generations of a recovery point
//   volumes/<name>/source.json                  a volume made from a snapshot: the
//                                               snapshot's manifest, until hydrated
//   volumes/<name>/holds/<id>/<holder>          volume <holder> is made from snapshot
//                                               <id> and still reads its objects

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/status.h"

namespace ferry {

inline constexpr int kFormatVersion = 1;
inline constexpr uint64_t kDefaultChunkSize = 1 << 20;
inline constexpr uint64_t kMinChunkSize = 64 << 10;
inline constexpr uint64_t kMaxChunkSize = 64 << 20;

struct VolumeHeader {
  int format = kFormatVersion;
  std::string name;
  uint64_t size = 0;
  uint64_t chunkSize = kDefaultChunkSize;
  int64_t createdUnix = 0;
};

struct ChunkKey {
  uint64_t index = 0;
  uint64_t generation = 0;
};

std::string volumePrefix(std::string_view volume);
std::string headerKey(std::string_view volume);
std::string leaseKey(std::string_view volume);
std::string chunksPrefix(std::string_view volume);
std::string chunkKey(std::string_view volume, uint64_t index, uint64_t generation);
// Exactly 16 lowercase hex digits, as object names spell indexes and generations.
std::optional<uint64_t> parseHex16(std::string_view s);
// Parses the part after chunksPrefix(): "<16 hex>.<16 hex>".
std::optional<ChunkKey> parseChunkKey(std::string_view tail);

// A snapshot: the volume's stored chunks at a recovery point. Chunks not listed are
// zeros. Every object listed stays in the store while the manifest exists.
struct SnapshotManifest {
  int format = kFormatVersion;
  std::string volume, id;
  uint64_t size = 0, chunkSize = 0;
  int64_t createdUnix = 0;
  std::vector<ChunkKey> chunks;  // ascending index
  // Only in a volume's source.json: the store the snapshot is in, when it is not the
  // volume's own.
  std::string sourceStore;
};

std::string snapshotsPrefix(std::string_view volume);
std::string snapshotKey(std::string_view volume, std::string_view id);
std::string sourceKey(std::string_view volume);
std::string holdsPrefix(std::string_view volume);
std::string holdsPrefix(std::string_view volume, std::string_view snapshot);
std::string holdKey(std::string_view volume, std::string_view snapshot, std::string_view holder);
std::string encodeManifest(const SnapshotManifest& m);
// Checks everything (format, geometry, chunk indexes in range and ascending).
Result<SnapshotManifest> decodeManifest(std::string_view json);

std::string encodeHeader(const VolumeHeader& h);
Result<VolumeHeader> decodeHeader(std::string_view json);

Status checkGeometry(uint64_t size, uint64_t chunkSize);
// The chunks a volume of `size` bytes has (the last one may be short).
inline uint64_t chunksFor(uint64_t size, uint64_t chunkSize) {
  return (size + chunkSize - 1) / chunkSize;
}

}  // namespace ferry
