#pragma once
// The object store: where a volume's chunks, headers and leases live. Keys are
// relative to the store's root (a directory, or bucket + prefix); see docs/FORMAT.md
// for the layout Ferry writes. Every implementation is safe to call from many
// threads at once.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/status.h"

namespace ferry {

// A string's bytes, as put() takes them (JSON headers, leases, manifests).
inline std::span<const uint8_t> bytesOf(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A small object's bytes with the tag a conditional write names that version by (on
// S3 its ETag, unquoted; on a local directory a digest of the bytes).
struct TaggedObject {
  std::string data;
  std::string tag;
};

struct ObjectInfo {
  std::string key;  // relative to the store root
  uint64_t size = 0;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // Stores data under key. When it returns OK the object is durable and any reader
  // sees all of it or (before) nothing.
  virtual Status put(const std::string& key, std::span<const uint8_t> data) = 0;

  // Reads up to out.size() bytes starting at offset. Returns the bytes read, which is
  // less than out.size() only at the end of the object. kNotFound if key is absent.
  virtual Result<size_t> get(const std::string& key, uint64_t offset, std::span<uint8_t> out) = 0;

  // Reads a whole (small) object.
  virtual Result<std::string> getAll(const std::string& key) = 0;

  // Reads a whole (small) object with its tag, for a later putIfTag.
  virtual Result<TaggedObject> getTagged(const std::string& key) = 0;

  // Compare-and-swap: stores data under key, as put does, only if the object is still
  // the version tagged ifTag (ifTag empty: only if key is absent). kConflict when it
  // is not: another writer came between the read and this write. Returns the tag of
  // what it stored. A retried request whose first attempt landed also answers
  // kConflict: a caller that must tell the two apart reads the object back.
  // Leases are written this way (docs/FORMAT.md). An S3 server that ignores
  // If-Match/If-None-Match on PUT makes it an ordinary put.
  virtual Result<std::string> putIfTag(const std::string& key, std::span<const uint8_t> data,
                                       const std::string& ifTag) = 0;

  // Every object whose key starts with prefix, in key order.
  virtual Result<std::vector<ObjectInfo>> list(const std::string& prefix) = 0;

  // Removes key; removing an absent key is OK.
  virtual Status remove(const std::string& key) = 0;

  // Stores under key a copy of source's object sourceKey (source may be this store),
  // as put does. A store that can copy without the bytes passing through this process
  // does (S3 CopyObject on the same server, a hard link in the same file system) and
  // sets *serverSide; otherwise the object is read and written (objects small enough
  // to hold in memory: chunks).
  virtual Status copyFrom(ObjectStore& source, const std::string& sourceKey, const std::string& key,
                          bool* serverSide);

  // For logs and errors: "file:///srv/ferry" or "s3://bucket/prefix at http://…".
  virtual std::string describe() const = 0;
};

// For its life, store requests made on this thread must be done by `until` (nested:
// the earliest wins): one not done by then fails (kUnavailable) instead of trying
// again, or waiting for an answer, past it. An owner whose lease is confirmed only up
// to a time must not change the store after it (docs/FORMAT.md, lease rule 4). The S3
// client honours it (each attempt's timeout, and whether there is time for another);
// a local directory's requests are not cut short.
class StoreDeadline {
 public:
  using Clock = std::chrono::steady_clock;
  explicit StoreDeadline(Clock::time_point until);
  ~StoreDeadline();
  StoreDeadline(const StoreDeadline&) = delete;
  StoreDeadline& operator=(const StoreDeadline&) = delete;
  // This thread's earliest deadline; Clock::time_point::max() when it has none.
  static Clock::time_point current();

 private:
  Clock::time_point previous_;
};

// Opens the store a URL names:
//   file:///path                       a local directory (the embedded default)
//   s3://bucket[/prefix]?endpoint=http://host:port&region=us-east-1
//        [&access_key=…&secret_key=…]  any S3-compatible server, path-style
// Credentials default to AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
Result<std::unique_ptr<ObjectStore>> openStore(const std::string& url);

}  // namespace ferry
