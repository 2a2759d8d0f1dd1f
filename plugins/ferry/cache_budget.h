#pragma once
// Gateway-wide accounting of the cache disk: bytes of cached chunks (bounded by
// cache-size, freed by evicting clean chunks) and of changes not yet in the store
// (bounded by upload-buffer: writes that would add more wait here, they never fail).
// A dirty chunk counts whole there, or with the journal on its changed pages.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace ferry {

class CacheBudget {
 public:
  CacheBudget(uint64_t cacheLimit, uint64_t dirtyLimit) : cacheLimit_(cacheLimit), dirtyLimit_(dirtyLimit) {}

  uint64_t cacheLimit() const { return cacheLimit_; }
  uint64_t dirtyLimit() const { return dirtyLimit_; }
  uint64_t cached() const { return cached_.load(); }
  uint64_t dirty() const { return dirty_.load(); }

  // Takes n bytes of cache if they fit.
  bool tryReserveCached(uint64_t n);
  // Counts bytes that are already on disk (at start-up), even past the limit.
  void forceCached(uint64_t n) { cached_ += n; }
  void releaseCached(uint64_t n);

  bool dirtyFull() const { return dirty_.load() >= dirtyLimit_; }
  // Wakes the waiters when the count reaches half the limit (the journal's cue).
  void addDirty(uint64_t n) {
    uint64_t after = dirty_ += n;
    if (after * 2 >= dirtyLimit_ && (after - n) * 2 < dirtyLimit_) wake();
  }
  void releaseDirty(uint64_t n);
  // Dirty chunks whose changes are all in the store's journal: not counted as dirty
  // (the upload buffer), still cached and not evictable until uploaded whole.
  uint64_t journaled() const { return journaled_.load(); }
  void addJournaled(uint64_t n) { journaled_ += n; }
  void releaseJournaled(uint64_t n) { journaled_ -= n; }
  // Cached dirty chunks, journaled or not, whole: the cache they keep from eviction.
  // (With the journal on, dirty() counts only their changed pages.)
  uint64_t pinned() const { return pinned_.load(); }
  void addPinned(uint64_t n) { pinned_ += n; }
  void releasePinned(uint64_t n) { pinned_ -= n; }

  // Writers waiting for room in the cache (nothing evictable now): the journal's cue
  // to make journaled, evictable chunks, and else the uploader's to hurry. The first
  // one wakes the waiters.
  void addRoomWaiter() {
    if (roomWaiters_.fetch_add(1) == 0) wake();
  }
  void removeRoomWaiter() { roomWaiters_.fetch_sub(1); }
  bool roomWanted() const { return roomWaiters_.load() > 0; }

  // Waits until dirty bytes are under the limit, the timeout passes, or wake().
  void waitForDirtyRoom(std::chrono::milliseconds timeout);
  // Waits until something was released (cache or dirty), dirty bytes reached half the
  // limit, wake(), or the timeout passes.
  void waitForRelease(std::chrono::milliseconds timeout) { waitForRelease(releases(), timeout); }
  // The same, counting from `seen` (releases() read before the caller looked at the
  // counts): nothing that happened since is missed.
  void waitForRelease(uint64_t seen, std::chrono::milliseconds timeout);
  uint64_t releases();
  void wake();

 private:
  const uint64_t cacheLimit_;
  const uint64_t dirtyLimit_;
  std::atomic<uint64_t> cached_{0};
  std::atomic<uint64_t> dirty_{0};
  std::atomic<uint64_t> journaled_{0};
  std::atomic<uint64_t> pinned_{0};
  std::atomic<int> roomWaiters_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t releases_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace ferry
