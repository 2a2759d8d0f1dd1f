// Write-back: a dirty chunk stored whole as a new generation (docs/volume-engine.md
// "Write path", "The journal"). A chunk whose changes are in the journal is rebuilt
// first; its due neighbours in the queue go with it, rebuilt together, so that a
// segment holding pieces of all of them is read once (mergeReads), not once per chunk.

#include <algorithm>
#include <optional>

#include "crc32c.h"
#include "page_buffer.h"
#include "parallel.h"
#include "volume.h"

namespace ferry {
namespace {

// The chunks an upload of one from the journal may take along, by their bytes: a group
// is the aligned run of this many chunks (at least one, at most kMaxBatch). Their
// buffers come from the engine's batchMemory (two such groups at once), waited for.
// After random writes every segment holds pieces of most chunks: in bench/journal.sh
// (PERFORMANCE.md) groups of 32 read about 20 ranges a chunk, 8 about 45, one chunk
// at a time about 87.
constexpr uint64_t kUploadBatchBytes = 32 << 20;
constexpr uint64_t kMaxBatch = 64;

// PUTs of one such upload in flight at once.
constexpr size_t kPutsAtOnce = 4;

uint64_t groupOf(uint64_t chunkSize) {
  return std::clamp<uint64_t>(kUploadBatchBytes / chunkSize, 1, kMaxBatch);
}

}  // namespace

Volume::UploadClaim Volume::claimUpload(uint64_t index) {
  ChunkState& st = states_[index];
  UploadClaim c;
  c.index = index;
  c.seq = st.writeSeq;
  c.where = st.where;
  c.oldGen = st.remoteGen;
  c.oldZero = st.remoteZero;
  // Zeros need no object when the store holds none or a tombstone — unless a
  // snapshot's copy sits above it.
  c.zeroNeedsNoObject = (c.oldGen == 0 || c.oldZero) && !lateCopyAbove(index, c.oldGen) && !journalHolds(index, st);
  c.rebuilt = c.where == Where::kJournal || c.where == Where::kPatched;
  if (c.rebuilt) c.copy = journalCopy(index);
  st.uploading = true;
  return c;
}

std::vector<uint64_t> Volume::dueNeighbours(uint64_t index, const UploadTurn& turn) const {
  std::vector<uint64_t> due;
  const uint64_t group = groupOf(row_.chunkSize);
  const ChunkState& self = states_[index];
  if (group == 1 || (self.where != Where::kJournal && self.where != Where::kPatched) || soloUploads_.count(index) ||
      host_.stopping()) {
    return due;
  }
  const bool draining = host_.draining();
  const uint64_t first = index / group * group;
  const uint64_t end = std::min<uint64_t>(first + group, states_.size());
  for (uint64_t i = first; i < end; ++i) {
    const ChunkState& st = states_[i];
    // Its queue entry stays: it finds the chunk stored, or goes again if it changed.
    if (i == index || !st.dirty || !st.queued || st.busy || st.uploading || writing_.count(i) != 0) continue;
    if (st.where != Where::kJournal && st.where != Where::kPatched) continue;
    if (soloUploads_.count(i) || (!draining && uploadWait(st, turn.idleMs, turn.maxAgeMs) > 0)) continue;
    due.push_back(i);
  }
  return due;
}

Status Volume::uploadChunk(uint64_t index, std::vector<uint8_t>& buf, const UploadTurn& turn) {
  // What may throw comes before the claims (an exception out of here ends the process:
  // the uploader does not catch); the big allocations after them are in catchAll.
  buf.resize(row_.chunkSize);
  std::unique_lock lock(mu_);
  ChunkState& st = states_[index];
  if (turn.fromQueue) st.queued = false;
  // Whether there is nothing (more) to do.
  auto done = [&]() -> std::optional<Status> {
    cv_.wait(lock, [&] { return !st.busy; });
    // Another worker has it in flight; when that one finds the chunk changed since its
    // copy it queues the chunk again. Two at once could finish out of order.
    if (!st.dirty || st.uploading) return Status::ok();
    if (fenced_) return Status::fenced("volume " + row_.name + " " + lastError_);
    return std::nullopt;
  };
  if (auto s = done()) return *s;
  // From the journal: its due neighbours come along, in buffers from the engine's
  // batchMemory (waited for without mu_).
  std::vector<uint64_t> near = dueNeighbours(index, turn);
  ByteGate::Hold room;
  if (!near.empty()) {
    lock.unlock();
    room = host_.batchMemory().take(near.size() * row_.chunkSize);
    lock.lock();
    if (auto s = done()) return *s;
    near = dueNeighbours(index, turn);
    near.resize(std::min<size_t>(near.size(), room.bytes() / row_.chunkSize));
    room.shrinkTo(near.size() * row_.chunkSize);
  }
  std::vector<UploadClaim> claims;
  claims.reserve(1 + near.size());
  struct Stored {
    Status status;
    uint64_t gen = 0;
    bool zero = false;
    bool tried = false;
    std::optional<uint32_t> crc;
  };
  std::vector<Stored> stored(1 + near.size());
  claims.push_back(claimUpload(index));
  for (uint64_t i : near) claims.push_back(claimUpload(i));
  lock.unlock();

  // No lock while copying: a write racing with the copy bumps writeSeq, so the chunk
  // stays dirty and goes up again; every write acknowledged before the copy is in it.
  // The neighbours' buffers are this upload's alone, given back when it ends.
  PageBuffer more;
  auto chunkOf = [&](size_t i) {
    uint8_t* at = i == 0 ? buf.data() : more.data() + (i - 1) * row_.chunkSize;
    return std::span<uint8_t>(at, chunkLength(claims[i].index));
  };
  Status read = catchAll([&] {
    if (claims.size() > 1) {
      more = PageBuffer((claims.size() - 1) * row_.chunkSize);
      std::vector<RebuildTarget> targets;
      for (size_t i = 0; i < claims.size(); ++i) targets.push_back({claims[i].index, &claims[i].copy, chunkOf(i)});
      return rebuild(targets, true);
    }
    if (claims[0].where == Where::kCached) return cache_.read(index * row_.chunkSize, buf.data(), chunkOf(0).size());
    return claims[0].rebuilt ? rebuild(index, claims[0].copy, chunkOf(0), true) : Status::ok();
  });

  // The PUTs, a few at once; once one fails, those not started are not tried.
  Status firstError = runParallel(claims.size(), kPutsAtOnce, [&](size_t i) -> Status {
    const UploadClaim& c = claims[i];
    Stored& out = stored[i];
    out.tried = true;
    out.gen = c.oldGen;
    out.status = catchAll([&] {
      const bool hasContent = c.where == Where::kCached || c.rebuilt;
      out.zero = !hasContent || (read && allZero(chunkOf(i)));
      if (!read || (out.zero && c.zeroNeedsNoObject)) return read;
      out.gen = nextGeneration();
      std::span<const uint8_t> body = out.zero ? std::span<const uint8_t>() : chunkOf(i);
      // (Of a chunk that stays cached: one rebuilt from the journal is not.)
      if (!out.zero && c.where == Where::kCached) out.crc = crc32c(body);
      StorePriority::Upload held = uploadTurn(turn.forSnapshot);
      host_.bandwidth().upload(body.size());
      // After any wait for bandwidth.
      return underLease([&] { return host_.store().put(chunkKey(row_.name, c.index, out.gen), body); });
    });
    return out.status;
  });
  // One chunk that cannot be rebuilt (an object or segment gone, corrupt) must not hold
  // up its neighbours: after such a failure each goes alone until it is stored. (Other
  // failures, a store down or refusing, fail them alone as well.)
  const bool solo = claims.size() > 1 && !read && (read.code() == Code::kNotFound || read.code() == Code::kCorruption);
  Status result;
  for (size_t i = 0; i < claims.size(); ++i) {
    Stored& out = stored[i];
    if (!out.tried) out = {firstError, claims[i].oldGen, false, true};
    lock.lock();
    if (solo) soloUploads_.insert(claims[i].index);
    Status s = finishUpload(claims[i], out.status, out.gen, out.zero, out.crc, lock);
    lock.unlock();
    if (i == 0) {
      result = s;
      // Not from the queue: the uploader may have found it ours meanwhile and let its
      // entry go (queued cleared), so a failure queues it again.
      if (!s && !turn.fromQueue) requeue(index);
    } else if (!s) {
      requeue(claims[i].index);  // unless its queue entry is still there
    }
  }
  return result;
}

Status Volume::finishUpload(const UploadClaim& c, Status s, uint64_t newGen, bool isZero, std::optional<uint32_t> crc,
                            std::unique_lock<std::mutex>& lock) {
  const uint64_t index = c.index;
  ChunkState& st = states_[index];
  st.uploading = false;
  if (c.rebuilt) doneReading(c.copy);
  if (!s) {
    ++uploadErrors_;
    lastError_ = s.toString();
    // A PUT given up on (a timeout, the lease deadline) may still be stored by the
    // server: an object above remoteGen, as a snapshot's late copy is. Zeros then need
    // a tombstone over it, or an adopting gateway would read that object.
    if (newGen != c.oldGen) lateCopies_[index] = std::max(lateCopies_[index], newGen);
    cv_.notify_all();
    return s.withContext("upload " + row_.name + " chunk " + std::to_string(index));
  }
  if (newGen != c.oldGen) {
    if (c.oldGen & kSourceGen) {
      --hydrationLeft_;  // the source's object: not ours to delete
    } else if (c.oldGen != 0) {
      supersededPending_.push_back(chunkKey(row_.name, index, c.oldGen));
    }
    st.remoteGen = newGen;
    st.remoteZero = isZero;
    st.crc.reset();
    if (!isZero && crc) noteContent(st, newGen, *crc);
    soloUploads_.erase(index);
    releaseJournalRefs(index);
    if (!lateCopyAbove(index, newGen)) lateCopies_.erase(index);
    ++uploads_;
    uploadedBytes_ += isZero ? 0 : chunkLength(index);
  }
  frozenUploaded(index, c.seq, isZero ? 0 : newGen);
  // A write in flight to a patched chunk has its bytes only in the cache file: it stays
  // patched (its new object under them) and goes again.
  if (st.writeSeq == c.seq && writing_.count(index) == 0) {
    setDirty(index, st, false);
    pages_.erase(index);
    st.cacheOnly = false;
    if (st.where == Where::kJournal || st.where == Where::kPatched) {
      // Stored whole: a patch's pages in the cache file go after the next commit.
      if (st.where == Where::kPatched) punchPending_.push_back(index);
      st.where = isZero ? Where::kZero : Where::kRemote;
      st.rangeReads = 0;  // read in pages from the journal until now: a new object's count
      settlePatch(index, st);
    }
  } else {
    setDirty(index, st, true);  // changed while we copied: go again
    // (A patch write still in flight queues it once its bytes land.)
    if (!st.queued && writing_.count(index) == 0) {
      st.queued = true;
      lock.unlock();
      host_.enqueueUpload(shared_from_this(), index);
      lock.lock();
    }
  }
  markMeta(index, st);
  cv_.notify_all();
  return Status::ok();
}

uint32_t Volume::uploadWaitMs(uint64_t index, uint32_t idleMs, uint32_t maxAgeMs) {
  std::lock_guard lock(mu_);
  if (fenced_) return 0;
  return uploadWait(states_[index], idleMs, maxAgeMs);
}

uint32_t Volume::uploadWait(const ChunkState& st, uint32_t idleMs, uint32_t maxAgeMs) const {
  if (!st.dirty) return 0;
  // All its changes are in the journal already: storing it whole is compaction, left
  // to its maximum age (not idleness), so that it does not compete with the journal
  // and the writers for the store.
  // The same for a patched chunk: the journal takes its pages, and a whole upload would
  // read the chunk from the store first.
  if ((st.journaled && !st.cacheOnly) || st.where == Where::kPatched) idleMs = maxAgeMs;
  uint32_t now = engineClockMs();
  uint32_t idle = now - st.lastWriteMs;
  uint32_t age = now - st.dirtySinceMs;
  if (idle >= idleMs || age >= maxAgeMs) return 0;
  return std::min(idleMs - idle, maxAgeMs - age);
}

void Volume::requeue(uint64_t index) {
  std::unique_lock lock(mu_);
  ChunkState& st = states_[index];
  if (!st.dirty || st.queued || fenced_) return;
  st.queued = true;
  lock.unlock();
  host_.enqueueUpload(shared_from_this(), index);
}

}  // namespace ferry
