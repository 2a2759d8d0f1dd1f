// Snapshot manifests as JSON, written and read without a DOM: a manifest lists every
// stored chunk of a volume (a million for 1 TiB of 1 MiB chunks), and nlohmann's DOM
// of it took ~100 bytes an entry beside the text, at every recovery point
// (bench/memory.sh). The text is the same as the DOM wrote (keys in sorted order).
#include <algorithm>
#include <charconv>
#include <limits>

#include <nlohmann/json.hpp>

#include "format.h"

namespace ferry {
namespace {

void appendNumber(std::string& out, uint64_t v) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

void appendField(std::string& out, const char* key, const std::string& value) {
  out += ",\"";
  out += key;
  out += "\":";
  out += nlohmann::json(value).dump();  // escaped as JSON wants
}

// Collects a manifest's fields as the parser meets them; the chunk list goes straight
// into the manifest. Fields it does not know are skipped, whatever their shape.
class ManifestReader final : public nlohmann::json_sax<nlohmann::json> {
 public:
  SnapshotManifest m;
  std::string error;
  bool sawFormat = false, sawVolume = false, sawId = false, sawSize = false, sawChunkSize = false, sawCreated = false,
       sawChunks = false;

  bool null() override { return other("null"); }
  bool boolean(bool) override { return other("a boolean"); }
  bool number_float(number_float_t, const string_t&) override { return other("a fractional number"); }
  bool binary(binary_t&) override { return other("binary"); }
  bool number_integer(number_integer_t v) override {  // negative ones only
    if (depth_ == 1 && key_ == "created") {
      m.createdUnix = v;
      return sawCreated = true;
    }
    return other("a negative number");
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (depth_ == 3 && inChunks_) {
      if (entryLength_ < 2) entry_[entryLength_] = v;
      ++entryLength_;
      return true;
    }
    if (depth_ != 1) return other("a number");
    if (key_ == "format") {
      m.format = static_cast<int>(std::min<uint64_t>(v, std::numeric_limits<int>::max()));
      return sawFormat = true;
    }
    if (key_ == "size") {
      m.size = v;
      return sawSize = true;
    }
    if (key_ == "chunk_size") {
      m.chunkSize = v;
      return sawChunkSize = true;
    }
    if (key_ == "created" && v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      m.createdUnix = static_cast<int64_t>(v);
      return sawCreated = true;
    }
    return other("a number");
  }
  bool string(string_t& v) override {
    if (depth_ == 1 && key_ == "volume") {
      m.volume = std::move(v);
      return sawVolume = true;
    }
    if (depth_ == 1 && key_ == "snapshot") {
      m.id = std::move(v);
      return sawId = true;
    }
    if (depth_ == 1 && key_ == "source_store") {
      m.sourceStore = std::move(v);
      return true;
    }
    return other("a string");
  }
  bool start_object(std::size_t) override {
    if (depth_ == 0) return enter();
    if (!other("an object")) return false;
    return enter();
  }
  bool end_object() override { return leave(); }
  bool key(string_t& k) override {
    if (depth_ == 1) key_ = std::move(k);
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 1 && key_ == "chunks") {
      inChunks_ = sawChunks = true;
      m.chunks.clear();
    } else if (depth_ == 2 && inChunks_) {
      entryLength_ = 0;
    } else if (!other("an array")) {
      return false;
    }
    return enter();
  }
  bool end_array() override {
    if (depth_ == 3 && inChunks_) {
      if (entryLength_ != 2) return fail("snapshot manifest: a chunk entry is not [index, generation]");
      m.chunks.push_back({entry_[0], entry_[1]});
    } else if (depth_ == 2 && inChunks_) {
      inChunks_ = false;
    }
    return leave();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return fail(std::string("snapshot manifest: ") + e.what());
  }

 private:
  // A value the manifest has no place for: fine inside a field it does not know.
  bool other(const char* what) {
    if (depth_ == 0) return fail("snapshot manifest: not a JSON object");
    if (inChunks_) return fail(std::string("snapshot manifest: a chunk entry holds ") + what);
    bool known = key_ == "format" || key_ == "volume" || key_ == "snapshot" || key_ == "size" || key_ == "chunk_size" ||
                 key_ == "created" || key_ == "chunks" || key_ == "source_store";
    if (depth_ == 1 && known) return fail("snapshot manifest: field " + key_ + " holds " + what);
    return true;
  }
  bool enter() {
    ++depth_;
    return true;
  }
  bool leave() {
    --depth_;
    return true;
  }
  bool fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return false;
  }

  int depth_ = 0;
  std::string key_;  // the top-level field being read
  bool inChunks_ = false;
  uint64_t entry_[2] = {0, 0};
  size_t entryLength_ = 0;
};

}  // namespace

std::string encodeManifest(const SnapshotManifest& m) {
  std::string out;
  out.reserve(256 + m.chunks.size() * 24);
  out += "{\"chunk_size\":";
  appendNumber(out, m.chunkSize);
  out += ",\"chunks\":[";
  for (size_t i = 0; i < m.chunks.size(); ++i) {
    out += i == 0 ? "[" : ",[";
    appendNumber(out, m.chunks[i].index);
    out += ',';
    appendNumber(out, m.chunks[i].generation);
    out += ']';
  }
  out += "],\"created\":";
  out += std::to_string(m.createdUnix);
  out += ",\"format\":";
  out += std::to_string(m.format);
  out += ",\"size\":";
  appendNumber(out, m.size);
  appendField(out, "snapshot", m.id);
  if (!m.sourceStore.empty()) appendField(out, "source_store", m.sourceStore);
  appendField(out, "volume", m.volume);
  out += '}';
  return out;
}

Result<SnapshotManifest> decodeManifest(std::string_view json) {
  ManifestReader r;
  if (!nlohmann::json::sax_parse(json, &r)) {
    return Status::corruption(r.error.empty() ? "snapshot manifest does not parse" : r.error);
  }
  SnapshotManifest& m = r.m;
  if (r.sawFormat && m.format != kFormatVersion) {
    return Status::corruption("snapshot manifest format " + std::to_string(m.format) +
                              " is not one this gateway reads (" + std::to_string(kFormatVersion) + ")");
  }
  if (!r.sawFormat || !r.sawVolume || !r.sawId || !r.sawSize || !r.sawChunkSize || !r.sawCreated || !r.sawChunks) {
    return Status::corruption(
        "snapshot manifest: a field is missing (format, volume, snapshot, size, chunk_size, "
        "created and chunks are required)");
  }
  if (Status s = checkGeometry(m.size, m.chunkSize); !s) return Status::corruption("snapshot manifest: " + s.message());
  uint64_t count = chunksFor(m.size, m.chunkSize);
  for (size_t i = 0; i < m.chunks.size(); ++i) {
    const ChunkKey& k = m.chunks[i];
    if (k.index >= count || k.generation == 0 || (k.generation >> 63) != 0 ||
        (i > 0 && k.index <= m.chunks[i - 1].index)) {
      return Status::corruption("snapshot manifest " + m.id + ": bad chunk entry [" + std::to_string(k.index) + "," +
                                std::to_string(k.generation) + "]");
    }
  }
  return std::move(r.m);
}

}  // namespace ferry
