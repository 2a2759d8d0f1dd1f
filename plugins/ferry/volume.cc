#include "volume.h"

#include <algorithm>
#include <cstring>

#include "format.h"

namespace ferry {
namespace {

bool allZero(const uint8_t* p, size_t n) {
  // Compare word-wise; chunks are large and mostly decided in the first few bytes.
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w != 0) return false;
  }
  for (; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

thread_local std::vector<uint8_t> tlsChunkBuffer;

// Reads of a cold chunk up to this size are served by a range GET the first time.
constexpr size_t kRangeReadMax = 64 << 10;
constexpr uint8_t kRangeReadsBeforeFetch = 3;

}  // namespace

uint32_t engineClockMs() {
  return static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

namespace {
uint64_t readAheadChunksFor(uint64_t bytes, uint64_t chunkSize) {
  return bytes == 0 ? 0 : std::max<uint64_t>(1, bytes / chunkSize);
}
}  // namespace

Volume::Volume(VolumeHost& host, VolumeRow row, CacheFile cache, uint64_t epoch)
    : host_(host), row_(std::move(row)), cache_(std::move(cache)), epoch_(epoch),
      states_((row_.size + row_.chunkSize - 1) / row_.chunkSize),
      readAheadChunks_(readAheadChunksFor(host.readAheadBytes(), row_.chunkSize)),
      // Room for the chunks ahead of the reader and as many being read, and for the
      // chunk a stream reads in pieces even with read-ahead off.
      window_(static_cast<size_t>(2 * readAheadChunks_ + 2)) {}

uint64_t Volume::chunkLength(uint64_t index) const {
  return std::min(row_.chunkSize, row_.size - index * row_.chunkSize);
}

Status Volume::load(const std::vector<ChunkRow>& rows) {
  std::vector<uint64_t> toQueue;
  {
    std::lock_guard lock(mu_);
    for (const ChunkRow& r : rows) {
      if (r.index >= states_.size()) {
        return Status::corruption("volume " + row_.name + ": metadata names chunk " + std::to_string(r.index) +
                                  " past the end of the volume");
      }
      ChunkState& st = states_[r.index];
      st.remoteGen = r.remoteGen;
      st.remoteZero = (r.flags & kFlagRemoteZero) != 0;
      st.dirty = (r.flags & kFlagDirty) != 0;
      if (r.flags & kFlagCached) {
        st.where = Where::kCached;
        host_.budget().forceCached(chunkLength(r.index));
        if (st.dirty) host_.budget().addDirty(chunkLength(r.index));
      } else {
        st.where = (r.remoteGen != 0 && !st.remoteZero) ? Where::kRemote : Where::kZero;
      }
      if (st.dirty) {
        toQueue.push_back(r.index);
        ++dirtyChunks_;
      }
    }
  }
  for (uint64_t idx : toQueue) {
    {
      std::lock_guard lock(mu_);
      states_[idx].queued = true;
    }
    host_.enqueueUpload(shared_from_this(), idx);
  }
  return Status::ok();
}

ChunkRow Volume::rowOf(uint64_t index, const ChunkState& st) const {
  uint32_t flags = 0;
  if (st.where == Where::kCached) flags |= kFlagCached;
  if (st.dirty) flags |= kFlagDirty;
  if (st.remoteZero) flags |= kFlagRemoteZero;
  return ChunkRow{index, st.remoteGen, flags};
}

void Volume::markMeta(uint64_t index, ChunkState& st) {
  if (!st.metaPending) {
    st.metaPending = true;
    metaPendingList_.push_back(index);
  }
}

// REQUIRES: mu_ held. Keeps the dirty budget equal to the bytes of cached dirty chunks.
void Volume::setDirty(uint64_t index, ChunkState& st, bool dirty) {
  if (st.dirty == dirty) return;
  st.dirty = dirty;
  if (dirty) {
    st.dirtySinceMs = engineClockMs();
    ++dirtyChunks_;
  } else {
    --dirtyChunks_;
  }
  if (st.where == Where::kCached) {
    if (dirty) host_.budget().addDirty(chunkLength(index));
    else host_.budget().releaseDirty(chunkLength(index));
  }
  markMeta(index, st);
}

Status Volume::read(uint64_t offset, std::span<uint8_t> out) {
  while (!out.empty()) {
    uint64_t index = offset / row_.chunkSize;
    uint64_t inChunk = offset % row_.chunkSize;
    size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), chunkLength(index) - inChunk));
    if (Status s = readPiece(index, inChunk, out.first(n)); !s) return s;
    offset += n;
    out = out.subspan(n);
  }
  return Status::ok();
}

Status Volume::readPiece(uint64_t index, uint64_t inChunk, std::span<uint8_t> out) {
  uint64_t base = index * row_.chunkSize;
  bool streaming = false;  // a sequential reader overtook the read-ahead
  std::unique_lock lock(mu_);
  for (;;) {
    ChunkState& st = states_[index];
    if (st.busy) {
      cv_.wait(lock);
      continue;
    }
    if (st.where == Where::kZero) {
      lock.unlock();
      ++zeroReads_;
      std::memset(out.data(), 0, out.size());
      return Status::ok();
    }
    if (st.where == Where::kCached) {
      st.ioRefs.fetch_add(1);
      st.referenced = true;
      lock.unlock();
      ++readHits_;
      Status s = cache_.read(base + inChunk, out.data(), out.size());
      st.ioRefs.fetch_sub(1);
      return s;
    }
    // Remote. Fetched ahead of a sequential reader?
    if (auto entry = window_.find(index, st.remoteGen)) {
      if (!entry->ready && entry->started) {
        if (host_.stopping()) return Status::unavailable("gateway is shutting down");
        cv_.wait_for(lock, std::chrono::milliseconds(100));
        continue;
      }
      if (!entry->ready) {
        // Still queued behind other read-ahead: waiting would bound the reader by the
        // read-ahead threads. It fetches the chunk itself, below.
        entry->abandoned = true;
        window_.erase(index);
        streaming = true;
      } else if (entry->status) {
        bool keep = host_.cacheStreams();
        st.busy = keep;  // (cache-streams: moving it into the cache)
        lock.unlock();
        // A ready entry's data no longer changes; copy without the lock.
        std::memcpy(out.data(), entry->data.data() + inChunk, out.size());
        ++readAheadHits_;
        bool cached = keep && host_.reserveCache(entry->data.size());
        if (cached && !cache_.write(index * row_.chunkSize, entry->data.data(), entry->data.size())) {
          host_.budget().releaseCached(entry->data.size());
          cached = false;
        }
        lock.lock();
        noteStoreRead(index);
        if (keep) {
          st.busy = false;
          cv_.notify_all();
        }
        if (cached) {
          st.where = Where::kCached;
          st.referenced = true;
          markMeta(index, st);
          window_.erase(index);
        } else {
          window_.consumed(index, out.size(), chunkLength(index), engineClockMs());
        }
        scheduleReadAhead(index + 1);
        return Status::ok();
      } else {
        window_.erase(index);  // the fetch failed: the usual path below tries again
      }
    }
    // The first few small reads of a cold chunk ask the store for just their
    // bytes (range GETs: cold random reads cost no more than they need); a chunk read
    // more often than that, or read whole, or right after the chunk before it (a
    // sequential reader), is fetched whole.
    if (!streaming && !isStream(index, 1) && out.size() <= kRangeReadMax && out.size() < chunkLength(index) &&
        st.rangeReads < kRangeReadsBeforeFetch) {
      ++st.rangeReads;
      uint64_t gen = st.remoteGen;
      lock.unlock();
      ++readMisses_;
      ++rangeReads_;
      auto got = host_.store().get(chunkKey(row_.name, index, gen), inChunk, out);
      if (!got && got.status().code() == Code::kNotFound) {
        // A write and an upload replaced this generation (and deleted it) while we
        // read without a lock: look at the chunk again.
        lock.lock();
        if (states_[index].where != Where::kRemote || states_[index].remoteGen != gen) continue;
        lock.unlock();
      }
      if (!got) return got.status().withContext("volume " + row_.name + " chunk " + std::to_string(index));
      downloadedBytes_ += got.value();
      // A tombstone or a short object reads as zeros past its end.
      std::memset(out.data() + got.value(), 0, out.size() - got.value());
      return Status::ok();
    }
    // Fetch the whole chunk once; concurrent readers of it wait on busy. A sequential
    // scan of cold data is served without filling the cache (unless cache-streams):
    // writing it all to the cache disk would bound the scan by the disk's write rate
    // and push out what the cache holds.
    st.busy = true;
    uint64_t gen = st.remoteGen;
    bool stream = isStream(index, 8);
    noteStoreRead(index);
    bool keep = !stream || host_.cacheStreams();
    // A read of the whole chunk lands straight in the caller's buffer; a stream that
    // reads a chunk in pieces finds the rest of it in the read-ahead window.
    bool whole = inChunk == 0 && out.size() == chunkLength(index);
    std::shared_ptr<ReadWindow::Entry> held;
    // Read-ahead is for readers that take a chunk in pieces (dd, a file copy): one
    // that reads whole chunks at depth has its own parallelism, and measured slower
    // with read-ahead competing for the store (docs/PERFORMANCE.md).
    if (stream && !whole) {
      if (!keep) held = window_.add(index, gen, engineClockMs());
      if (held) held->started = true;
      scheduleReadAhead(index + 1);
    }
    lock.unlock();
    ++readMisses_;
    std::span<uint8_t> chunk;
    if (whole) {
      chunk = out;
    } else if (held) {
      held->data.resize(chunkLength(index));  // not ready yet: no one else looks at it
      chunk = held->data;
    } else {
      chunk = threadChunkBuffer(index);
    }
    Status s = fetch(index, gen, chunk);
    bool cached = false;
    if (s && keep && host_.reserveCache(chunk.size())) {
      s = cache_.write(base, chunk.data(), chunk.size());
      if (s) cached = true;
      else host_.budget().releaseCached(chunk.size());
    }
    // (With no room in the cache — all dirty or in use — the read is served uncached.)
    if (s && !whole) std::memcpy(out.data(), chunk.data() + inChunk, out.size());
    lock.lock();
    st.busy = false;
    if (cached) {
      st.where = Where::kCached;
      st.referenced = true;
      markMeta(index, st);
    }
    if (held) {
      held->ready = true;
      held->status = s;
      if (s) window_.consumed(index, out.size(), chunkLength(index), engineClockMs());
      else window_.erase(index);
    }
    cv_.notify_all();
    return s;
  }
}

void Volume::scheduleReadAhead(uint64_t from) {
  uint64_t end = std::min<uint64_t>(from + readAheadChunks_, states_.size());
  for (uint64_t i = from; i < end; ++i) {
    const ChunkState& st = states_[i];
    if (st.where != Where::kRemote || st.busy || window_.contains(i)) continue;
    auto entry = window_.add(i, st.remoteGen, engineClockMs());
    if (!entry) return;  // the window is full of chunks not read yet
    uint64_t gen = st.remoteGen;
    if (!host_.submitReadAhead([self = shared_from_this(), i, gen, entry] { self->readAheadFetch(i, gen, entry); })) {
      window_.erase(i);
      return;
    }
  }
}

void Volume::readAheadFetch(uint64_t index, uint64_t gen, const std::shared_ptr<ReadWindow::Entry>& entry) {
  {
    std::lock_guard lock(mu_);
    if (entry->abandoned) return;
    entry->started = true;
  }
  entry->data.resize(chunkLength(index));
  Status s = fetch(index, gen, entry->data);
  if (s) ++readAheadFetches_;
  std::lock_guard lock(mu_);
  entry->ready = true;
  entry->status = s;
  entry->touchedMs = engineClockMs();
  cv_.notify_all();
}

bool Volume::isStream(uint64_t index, uint64_t behind) const {
  for (uint64_t m : recentMisses_) {
    // m is index + 1 of a chunk read from the store: one of the chunks just before?
    if (m != 0 && m <= index && index - m < behind) return true;
  }
  return false;
}

void Volume::noteStoreRead(uint64_t index) {
  if (recentMisses_[(recentMissPos_ + recentMisses_.size() - 1) % recentMisses_.size()] == index + 1) return;
  recentMisses_[recentMissPos_] = index + 1;
  recentMissPos_ = (recentMissPos_ + 1) % recentMisses_.size();
}

std::span<uint8_t> Volume::threadChunkBuffer(uint64_t index) {
  tlsChunkBuffer.resize(row_.chunkSize);
  return std::span(tlsChunkBuffer.data(), chunkLength(index));
}

Status Volume::fetch(uint64_t index, uint64_t gen, std::span<uint8_t> buf) {
  uint64_t len = chunkLength(index);
  auto got = host_.store().get(chunkKey(row_.name, index, gen), 0, buf.first(len));
  if (!got) return got.status().withContext("volume " + row_.name + " chunk " + std::to_string(index));
  if (got.value() != len && got.value() != 0) {
    return Status::corruption("volume " + row_.name + " chunk " + std::to_string(index) + " generation " +
                              std::to_string(gen) + " holds " + std::to_string(got.value()) +
                              " bytes, expected " + std::to_string(len));
  }
  if (got.value() == 0) std::memset(buf.data(), 0, len);
  downloadedBytes_ += got.value();
  return Status::ok();
}

Status Volume::write(uint64_t offset, std::span<const uint8_t> data, bool fua) {
  while (!data.empty()) {
    uint64_t index = offset / row_.chunkSize;
    uint64_t inChunk = offset % row_.chunkSize;
    size_t n = static_cast<size_t>(std::min<uint64_t>(data.size(), chunkLength(index) - inChunk));
    if (Status s = writePiece(index, inChunk, data.first(n), false); !s) return s;
    offset += n;
    data = data.subspan(n);
  }
  return fua ? persist() : Status::ok();
}

Status Volume::zero(uint64_t offset, uint64_t length, bool fua) {
  static const uint8_t kZeros[1] = {0};
  while (length > 0) {
    uint64_t index = offset / row_.chunkSize;
    uint64_t inChunk = offset % row_.chunkSize;
    uint64_t n = std::min<uint64_t>(length, chunkLength(index) - inChunk);
    Status s = (inChunk == 0 && n == chunkLength(index))
                   ? zeroWholeChunk(index)
                   : writePiece(index, inChunk, std::span(kZeros, static_cast<size_t>(n)), true);
    if (!s) return s;
    offset += n;
    length -= n;
  }
  return fua ? persist() : Status::ok();
}

// REQUIRES: the caller set states_[index].busy. Brings the chunk into the cache file:
// reserves space, then fills it from the store, or makes it zeros, unless the caller
// is about to overwrite all of it.
Status Volume::materialize(uint64_t index, Where where, uint64_t gen, bool overwriteAll) {
  uint64_t len = chunkLength(index);
  uint64_t base = index * row_.chunkSize;
  while (!host_.reserveCache(len)) {
    if (host_.stopping()) return Status::unavailable("gateway is shutting down");
    host_.budget().waitForRelease(std::chrono::milliseconds(100));
  }
  Status s;
  if (!overwriteAll) {
    if (where == Where::kRemote) {
      std::span<uint8_t> chunk = threadChunkBuffer(index);
      s = fetch(index, gen, chunk);
      if (s) s = cache_.write(base, chunk.data(), len);
    } else {
      // The cache file may hold stale bytes from before a crash: make them zeros.
      s = cache_.punch(base, len);
    }
  }
  if (!s) host_.budget().releaseCached(len);
  return s;
}

Status Volume::writePiece(uint64_t index, uint64_t inChunk, std::span<const uint8_t> data, bool zero) {
  uint64_t base = index * row_.chunkSize;
  uint64_t len = chunkLength(index);
  std::unique_lock lock(mu_);
  for (;;) {
    if (fenced_) return Status::fenced("volume " + row_.name + " " + lastError_);
    ChunkState& st = states_[index];
    if (st.busy) {
      cv_.wait(lock);
      continue;
    }
    bool addsDirty = !(st.dirty && st.where == Where::kCached);
    if (addsDirty && host_.budget().dirtyFull()) {
      // Back-pressure: the upload buffer is full; wait for the uploader to drain.
      lock.unlock();
      if (host_.stopping()) return Status::unavailable("gateway is shutting down");
      host_.budget().waitForDirtyRoom(std::chrono::milliseconds(200));
      lock.lock();
      continue;
    }
    if (st.where != Where::kCached) {
      st.busy = true;
      Where where = st.where;
      uint64_t gen = st.remoteGen;
      lock.unlock();
      Status s = materialize(index, where, gen, !zero && inChunk == 0 && data.size() == len);
      lock.lock();
      st.busy = false;
      cv_.notify_all();
      if (!s) return s;
      bool wasDirty = st.dirty;
      setDirty(index, st, false);  // re-added below, now counted against the cached bytes
      st.where = Where::kCached;
      if (wasDirty) setDirty(index, st, true);
    }
    // Pinned while the bytes travel to the cache file: not evictable. The change is
    // counted (writeSeq) only once the bytes are there, so an upload that copied the
    // chunk before they landed cannot mark it clean.
    setDirty(index, st, true);
    st.referenced = true;
    st.ioRefs.fetch_add(1);
    lock.unlock();
    Status s = zero ? cache_.punch(base + inChunk, data.size()) : cache_.write(base + inChunk, data.data(), data.size());
    if (s.code() == Code::kNoSpace && !zero) {
      // The cache disk is full: give back clean chunks and try once more.
      if (evictSome(64) > 0) s = cache_.write(base + inChunk, data.data(), data.size());
    }
    lock.lock();
    st.ioRefs.fetch_sub(1);
    setDirty(index, st, true);  // an upload may have finished in between
    ++st.writeSeq;
    st.lastWriteMs = engineClockMs();
    markMeta(index, st);
    bool enqueue = !st.queued;
    st.queued = true;
    lock.unlock();
    if (enqueue) host_.enqueueUpload(shared_from_this(), index);
    return s;
  }
}

Status Volume::zeroWholeChunk(uint64_t index) {
  uint64_t base = index * row_.chunkSize;
  uint64_t len = chunkLength(index);
  std::unique_lock lock(mu_);
  for (;;) {
    if (fenced_) return Status::fenced("volume " + row_.name + " " + lastError_);
    ChunkState& st = states_[index];
    if (st.busy) {
      cv_.wait(lock);
      continue;
    }
    bool remoteHasData = st.remoteGen != 0 && !st.remoteZero;
    if (st.where == Where::kZero && st.dirty == remoteHasData) return Status::ok();  // already zero
    if (st.where == Where::kCached) {
      setDirty(index, st, false);
      st.busy = true;
      lock.unlock();
      Status s = cache_.punch(base, len);
      lock.lock();
      st.busy = false;
      cv_.notify_all();
      if (!s) return s;
      host_.budget().releaseCached(len);
    }
    st.where = Where::kZero;
    ++st.writeSeq;
    setDirty(index, st, remoteHasData);
    markMeta(index, st);
    if (st.dirty && !st.queued) {
      st.queued = true;
      lock.unlock();
      host_.enqueueUpload(shared_from_this(), index);
    }
    return Status::ok();
  }
}

Status Volume::uploadChunk(uint64_t index, std::vector<uint8_t>& buf) {
  uint64_t len = chunkLength(index);
  std::unique_lock lock(mu_);
  ChunkState& st = states_[index];
  st.queued = false;
  cv_.wait(lock, [&] { return !st.busy; });
  if (!st.dirty) return Status::ok();
  // Another worker has it in flight; when that one finds the chunk changed since its
  // copy it queues the chunk again. Two at once could finish out of order.
  if (st.uploading) return Status::ok();
  if (fenced_) return Status::fenced("volume " + row_.name + " " + lastError_);
  uint32_t seq = st.writeSeq;
  Where where = st.where;
  uint64_t oldGen = st.remoteGen;
  bool oldZero = st.remoteZero;
  st.uploading = true;
  lock.unlock();

  // No lock while copying: a write racing with the copy bumps writeSeq, so the chunk
  // stays dirty and goes up again; every write acknowledged before the copy is in it.
  bool isZero = true;
  Status s;
  if (where == Where::kCached) {
    buf.resize(row_.chunkSize);
    s = cache_.read(index * row_.chunkSize, buf.data(), len);
    isZero = s && allZero(buf.data(), len);
  }
  uint64_t newGen = oldGen;
  if (s && !(isZero && (oldGen == 0 || oldZero))) {
    newGen = nextGeneration();
    std::span<const uint8_t> body = isZero ? std::span<const uint8_t>() : std::span<const uint8_t>(buf.data(), len);
    s = host_.store().put(chunkKey(row_.name, index, newGen), body);
  }

  lock.lock();
  st.uploading = false;
  if (!s) {
    ++uploadErrors_;
    lastError_ = s.toString();
    return s.withContext("upload " + row_.name + " chunk " + std::to_string(index));
  }
  if (newGen != oldGen) {
    if (oldGen != 0) supersededPending_.push_back(chunkKey(row_.name, index, oldGen));
    st.remoteGen = newGen;
    st.remoteZero = isZero;
    ++uploads_;
    uploadedBytes_ += isZero ? 0 : len;
  }
  if (st.writeSeq == seq) {
    setDirty(index, st, false);
  } else {
    setDirty(index, st, true);  // changed while we copied: go again
    if (!st.queued) {
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

uint64_t Volume::evictSome(size_t maxChunks) {
  std::vector<uint64_t> picked;
  {
    std::lock_guard lock(mu_);
    size_t n = states_.size();
    for (size_t step = 0; step < 2 * n && picked.size() < maxChunks; ++step) {
      uint64_t i = clockHand_;
      clockHand_ = (clockHand_ + 1) % n;
      ChunkState& st = states_[i];
      if (st.where != Where::kCached || st.dirty || st.busy || st.uploading || st.ioRefs.load() != 0) continue;
      if (st.referenced) {
        st.referenced = false;
        continue;
      }
      st.busy = true;
      st.where = (st.remoteGen != 0 && !st.remoteZero) ? Where::kRemote : Where::kZero;
      markMeta(i, st);
      picked.push_back(i);
    }
  }
  if (picked.empty()) return 0;
  // The rows must say "not cached" durably before the holes are punched; otherwise a
  // crash in between would leave rows pointing at zeros.
  Status s = persist();
  Status punched;
  if (s) {
    // The rows say "not cached" and the store holds the data, so the chunks are
    // dropped whatever the punch does (a failed punch only leaves stale bytes that are
    // overwritten or punched before use); busy, so nobody touches them meanwhile.
    for (uint64_t i : picked) {
      if (Status p = cache_.punch(i * row_.chunkSize, chunkLength(i)); !p) punched = p;
    }
  }
  uint64_t freed = 0;
  std::lock_guard lock(mu_);
  for (uint64_t i : picked) {
    ChunkState& st = states_[i];
    st.busy = false;
    if (s) {
      freed += chunkLength(i);
    } else {
      st.where = Where::kCached;  // the rows may not say otherwise: keep it cached
      markMeta(i, st);
    }
  }
  cv_.notify_all();
  if (!s) lastError_ = s.toString();
  if (!punched) lastError_ = punched.toString();
  if (freed) host_.budget().releaseCached(freed);
  return freed;
}

Status Volume::persist() {
  std::lock_guard plock(persistMu_);
  std::vector<ChunkRow> rows;
  std::vector<uint64_t> indexes;
  std::vector<std::string> superseded;
  {
    std::lock_guard lock(mu_);
    indexes.swap(metaPendingList_);
    rows.reserve(indexes.size());
    for (uint64_t i : indexes) {
      states_[i].metaPending = false;
      rows.push_back(rowOf(i, states_[i]));
    }
    superseded.swap(supersededPending_);
  }
  // The data first, then the rows that point at it.
  Status s = cache_.sync();
  if (s && !rows.empty()) {
    s = host_.metadata().writeChunks(row_.id, rows);
    // A full cache disk must not stop the metadata: without a commit nothing can be
    // evicted to make room. Spend the reserve and try again.
    if (s.code() == Code::kNoSpace && host_.releaseSpaceReserve()) s = host_.metadata().writeChunks(row_.id, rows);
  }
  std::lock_guard lock(mu_);
  if (!s) {
    for (uint64_t i : indexes) markMeta(i, states_[i]);
    supersededPending_.insert(supersededPending_.end(), superseded.begin(), superseded.end());
    lastError_ = s.toString();
    return s.withContext("persist volume " + row_.name);
  }
  supersededReady_.insert(supersededReady_.end(), superseded.begin(), superseded.end());
  return Status::ok();
}

void Volume::deleteSuperseded() {
  std::vector<std::string> keys;
  {
    std::lock_guard lock(mu_);
    keys.swap(supersededReady_);
  }
  for (const std::string& k : keys) {
    // A failure only leaks an object a later collection can find; it loses nothing.
    if (Status s = host_.store().remove(k); !s) noteError("delete " + k + ": " + s.toString());
  }
}

bool Volume::waitClean(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [&] { return dirtyChunks_ == 0; });
}

std::vector<std::pair<uint64_t, uint64_t>> Volume::remoteMap() {
  std::lock_guard lock(mu_);
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (uint64_t i = 0; i < states_.size(); ++i) {
    if (states_[i].remoteGen != 0 && !states_[i].remoteZero) out.emplace_back(i, states_[i].remoteGen);
  }
  return out;
}

uint32_t Volume::uploadWaitMs(uint64_t index, uint32_t idleMs, uint32_t maxAgeMs) {
  std::lock_guard lock(mu_);
  const ChunkState& st = states_[index];
  if (!st.dirty || fenced_) return 0;
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

void Volume::fence(const std::string& why) {
  std::lock_guard lock(mu_);
  lastError_ = why;
  fenced_ = true;
  cv_.notify_all();
}

void Volume::noteError(const std::string& error) {
  std::lock_guard lock(mu_);
  lastError_ = error;
}

VolumeStats Volume::stats() {
  VolumeStats v;
  v.name = row_.name;
  v.size = row_.size;
  v.chunkSize = row_.chunkSize;
  v.chunks = states_.size();
  {
    std::lock_guard lock(mu_);
    for (uint64_t i = 0; i < states_.size(); ++i) {
      const ChunkState& st = states_[i];
      if (st.where == Where::kCached) {
        ++v.cachedChunks;
        v.cachedBytes += chunkLength(i);
        if (st.dirty) v.dirtyBytes += chunkLength(i);
      }
      if (st.queued) ++v.queued;
      if (st.remoteGen != 0 && !st.remoteZero) ++v.remoteChunks;
    }
    v.lastError = lastError_;
    v.dirtyChunks = dirtyChunks_;
  }
  v.uploadedBytes = uploadedBytes_;
  v.downloadedBytes = downloadedBytes_;
  v.uploads = uploads_;
  v.uploadErrors = uploadErrors_;
  v.readHits = readHits_;
  v.readMisses = readMisses_;
  v.rangeReads = rangeReads_;
  v.zeroReads = zeroReads_;
  v.readAheadFetches = readAheadFetches_;
  v.readAheadHits = readAheadHits_;
  v.fenced = fenced_;
  return v;
}

void Volume::releaseBudget() {
  std::lock_guard lock(mu_);
  for (uint64_t i = 0; i < states_.size(); ++i) {
    ChunkState& st = states_[i];
    if (st.where != Where::kCached) continue;
    if (st.dirty) host_.budget().releaseDirty(chunkLength(i));
    host_.budget().releaseCached(chunkLength(i));
    st.where = Where::kZero;
    if (st.dirty) --dirtyChunks_;
    st.dirty = false;
  }
}

}  // namespace ferry
