#include "format.h"

#include <cinttypes>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace ferry {

std::string volumePrefix(std::string_view volume) { return "volumes/" + std::string(volume) + "/"; }
std::string headerKey(std::string_view volume) { return volumePrefix(volume) + "volume.json"; }
std::string leaseKey(std::string_view volume) { return volumePrefix(volume) + "lease.json"; }
std::string chunksPrefix(std::string_view volume) { return volumePrefix(volume) + "chunks/"; }
std::string snapshotsPrefix(std::string_view volume) { return volumePrefix(volume) + "snapshots/"; }
std::string snapshotKey(std::string_view volume, std::string_view id) {
  return snapshotsPrefix(volume) + std::string(id) + ".json";
}
std::string sourceKey(std::string_view volume) { return volumePrefix(volume) + "source.json"; }
std::string holdsPrefix(std::string_view volume) { return volumePrefix(volume) + "holds/"; }
std::string holdsPrefix(std::string_view volume, std::string_view snapshot) {
  return holdsPrefix(volume) + std::string(snapshot) + "/";
}
std::string holdKey(std::string_view volume, std::string_view snapshot, std::string_view holder) {
  return holdsPrefix(volume, snapshot) + std::string(holder);
}

std::string chunkKey(std::string_view volume, uint64_t index, uint64_t generation) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 ".%016" PRIx64, index, generation);
  return chunksPrefix(volume) + buf;
}

std::optional<uint64_t> parseHex16(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return std::nullopt;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

std::optional<ChunkKey> parseChunkKey(std::string_view tail) {
  if (tail.size() != 33 || tail[16] != '.') return std::nullopt;
  auto i = parseHex16(tail.substr(0, 16));
  auto g = parseHex16(tail.substr(17));
  if (!i || !g || *g == 0) return std::nullopt;
  return ChunkKey{*i, *g};
}

std::string encodeHeader(const VolumeHeader& h) {
  nlohmann::json j = {{"format", h.format}, {"name", h.name}, {"size", h.size},
                      {"chunk_size", h.chunkSize}, {"created", h.createdUnix}};
  return j.dump();
}

Result<VolumeHeader> decodeHeader(std::string_view json) {
  try {
    auto j = nlohmann::json::parse(json);
    VolumeHeader h;
    h.format = j.at("format").get<int>();
    if (h.format != kFormatVersion) {
      return Status::corruption("volume header has format " + std::to_string(h.format) +
                                ", this Ferry reads format " + std::to_string(kFormatVersion));
    }
    h.name = j.at("name").get<std::string>();
    h.size = j.at("size").get<uint64_t>();
    h.chunkSize = j.at("chunk_size").get<uint64_t>();
    h.createdUnix = j.value("created", int64_t{0});
    if (Status s = checkGeometry(h.size, h.chunkSize); !s) return Status::corruption(s.message());
    return h;
  } catch (const std::exception& e) {
    return Status::corruption(std::string("volume header does not parse: ") + e.what());
  }
}

Status checkGeometry(uint64_t size, uint64_t chunkSize) {
  if (chunkSize < kMinChunkSize || chunkSize > kMaxChunkSize || (chunkSize & (chunkSize - 1)) != 0) {
    return Status::invalid("chunk size must be a power of two between 64K and 64M, got " +
                           std::to_string(chunkSize));
  }
  if (size == 0 || size % 512 != 0) {
    return Status::invalid("volume size must be a positive multiple of 512 bytes, got " + std::to_string(size));
  }
  if (size > (uint64_t{1} << 50)) return Status::invalid("volume size is larger than 1 PiB");
  return Status::ok();
}

}  // namespace ferry
