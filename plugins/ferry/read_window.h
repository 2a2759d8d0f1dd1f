#pragma once
// The read-ahead window of one volume: whole chunks fetched from the store for a
// sequential reader and held in memory, not in the cache (a cold scan would otherwise
// be bounded by the cache disk's write rate and push out what the cache holds).
//
// An entry is keyed by chunk index and names the generation it holds; generations are
// immutable, so an entry is good exactly while the chunk is still remote at that
// generation. Not thread-safe: the volume guards it with its own mutex.

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "ferry/status.h"

namespace ferry {

class ReadWindow {
 public:
  struct Entry {
    uint64_t gen = 0;
    std::vector<uint8_t> data;  // the chunk, once ready
    bool started = false;       // a read-ahead thread is fetching it
    bool abandoned = false;     // a reader came first and fetches it itself
    bool ready = false;         // fetched (status says how it went)
    Status status;
    uint64_t consumed = 0;  // bytes handed to readers
    uint32_t touchedMs = 0;
  };

  // maxEntries = 0 disables the window.
  explicit ReadWindow(size_t maxEntries) : maxEntries_(maxEntries) {}

  size_t capacity() const { return maxEntries_; }
  // The entry for index holding gen, or null.
  std::shared_ptr<Entry> find(uint64_t index, uint64_t gen) const;
  bool contains(uint64_t index) const { return entries_.count(index) != 0; }
  // A new, not yet ready entry; null when the window is full of entries still in use.
  // Makes room by dropping failed or stale (not touched for kStaleMs) entries, then
  // the ready one furthest behind `index`, then the unstarted one furthest ahead of it
  // (marked abandoned, so its read-ahead task skips it).
  std::shared_ptr<Entry> add(uint64_t index, uint64_t gen, uint32_t nowMs);
  // A reader took `bytes` of the chunk; a fully read chunk leaves the window.
  void consumed(uint64_t index, uint64_t bytes, uint64_t chunkLength, uint32_t nowMs);
  void erase(uint64_t index) { entries_.erase(index); }
  size_t size() const { return entries_.size(); }

  static constexpr uint32_t kStaleMs = 10000;

 private:
  const size_t maxEntries_;
  std::map<uint64_t, std::shared_ptr<Entry>> entries_;
};

}  // namespace ferry
