// The read path of a volume: cache hits, zero chunks, range GETs for cold small
// reads, whole-chunk fetches, and the read-ahead window for sequential readers.
// docs/volume-engine.md, "Read path".

#include <algorithm>
#include <cstring>

#include "crc32c.h"
#include "ferry/log.h"
#include "format.h"
#include "volume.h"

namespace ferry {
namespace {

thread_local std::vector<uint8_t> tlsChunkBuffer;

// Reads of a cold chunk up to this size are served by a range GET the first time.
constexpr size_t kRangeReadMax = 64 << 10;
constexpr uint8_t kRangeReadsBeforeFetch = 3;
// How recent a whole read of the chunk before must be for a read to count as the next
// step of a sequential scan. A reader paused longer (or a random read next to a chunk
// fetched minutes ago) starts over with range reads: three small GETs at most.
constexpr uint32_t kStreamWindowMs = 3000;

}  // namespace

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
    // Cached, or patched with the pages read all in the cache file.
    if (st.where == Where::kCached || (st.where == Where::kPatched && patchCovers(index, inChunk, out.size()))) {
      st.ioRefs.fetch_add(1);
      st.referenced = true;
      lock.unlock();
      ++readHits_;
      Status s = cache_.read(base + inChunk, out.data(), out.size());
      st.ioRefs.fetch_sub(1);
      return s;
    }
    if (st.where == Where::kJournal || st.where == Where::kPatched) return readJournaled(index, inChunk, out, lock);
    // Remote. Left in the cache file by the run before a crash?
    if (st.unverified) {
      verifyCached(index, lock);
      continue;
    }
    // Fetched ahead of a sequential reader?
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
        const uint32_t crc = cached ? crc32c(entry->data) : 0;
        lock.lock();
        noteStoreRead(index);
        if (keep) {
          st.busy = false;
          cv_.notify_all();
        }
        if (cached && fenced_) {  // deleted meanwhile: its budget was given back without this
          host_.budget().releaseCached(entry->data.size());
          cached = false;
        }
        if (cached) {
          st.where = Where::kCached;
          st.referenced = true;
          noteContent(st, entry->gen, crc);
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
      StorePriority::Client turn = host_.storePriority().client();
      ++readMisses_;
      ++rangeReads_;
      host_.bandwidth().download(out.size());
      auto got = storeOf(gen).get(objectKey(index, gen), inChunk, out);
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
    StorePriority::Client turn = host_.storePriority().client();
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
    turn.end();
    bool cached = false;
    if (s && keep && host_.reserveCache(chunk.size())) {
      s = cache_.write(base, chunk.data(), chunk.size());
      if (s)
        cached = true;
      else
        host_.budget().releaseCached(chunk.size());
    }
    // (With no room in the cache — all dirty or in use — the read is served uncached.)
    if (s && !whole) std::memcpy(out.data(), chunk.data() + inChunk, out.size());
    const uint32_t crc = cached ? crc32c(chunk) : 0;
    lock.lock();
    st.busy = false;
    noteStoreRead(index);     // the scan window counts from the end of a slow fetch too
    if (cached && fenced_) {  // deleted meanwhile: its budget was given back without this
      host_.budget().releaseCached(chunk.size());
      cached = false;
    }
    if (cached) {
      st.where = Where::kCached;
      st.referenced = true;
      noteContent(st, gen, crc);
      markMeta(index, st);
    } else {
      st.rangeReads = 0;  // served from the store only: its small reads pay afresh
    }
    if (held) {
      held->ready = true;
      held->status = s;
      if (s)
        window_.consumed(index, out.size(), chunkLength(index), engineClockMs());
      else
        window_.erase(index);
    }
    cv_.notify_all();
    return s;
  }
}

Status Volume::readJournaled(uint64_t index, uint64_t inChunk, std::span<uint8_t> out,
                             std::unique_lock<std::mutex>& lock) {
  ChunkState& st = states_[index];
  // As for a chunk only in the store, small reads take only their pages (from the
  // object, the newest pieces holding them, a patch's pages) and cache nothing. But a
  // rebuild of the whole chunk takes a GET per segment holding pieces of it: tens after
  // random writes, where a small read takes one. So the chunk is read in pages for as
  // many reads as its whole rebuild would take GETs (at least three, as a chunk in the
  // store), then rebuilt and cached: at most twice the GETs of the better choice made
  // knowing the reads to come. A sequential reader has it rebuilt at once. The count
  // starts again when it leaves the cache (evictSome) or is served uncached (below).
  // (Its pieces are counted only once the first three reads are spent.)
  if (out.size() <= kRangeReadMax && out.size() < chunkLength(index) && !isStream(index, 1) &&
      (st.rangeReads < kRangeReadsBeforeFetch || st.rangeReads < wholeRebuildGets(index))) {
    ++st.rangeReads;
    st.ioRefs.fetch_add(1);  // a patch's pages stay in the cache file meanwhile
    JournalCopy copy = journalCopy(index);
    lock.unlock();
    StorePriority::Client turn = host_.storePriority().client();
    ++readMisses_;
    ++rangeReads_;
    std::span<uint8_t> chunk = threadChunkBuffer(index);
    const RebuildTarget target{index, &copy, chunk, inChunk, inChunk + out.size()};
    Status s = rebuild(std::span(&target, 1));
    turn.end();
    if (s) std::memcpy(out.data(), chunk.data() + inChunk, out.size());
    lock.lock();
    doneReading(copy);
    st.ioRefs.fetch_sub(1);
    // A patch whose pages all went to a segment meanwhile: in the journal only now.
    if (st.where == Where::kPatched) settlePatch(index, st);
    noteStoreRead(index);  // the next chunk's reads then see a sequential reader
    return s;
  }
  st.busy = true;  // the pieces stay as they are; other readers wait for the cache
  const Where was = st.where;
  JournalCopy copy = journalCopy(index);
  lock.unlock();
  StorePriority::Client turn = host_.storePriority().client();
  ++readMisses_;
  std::span<uint8_t> chunk = threadChunkBuffer(index);
  Status s = rebuild(index, copy, chunk);
  turn.end();
  bool cached = false;
  if (s && host_.reserveCache(chunk.size())) {
    // Around a patch's pages, and those writers are still writing there.
    if (writeAround(index, chunk, copy.keep)) {
      cached = true;
    } else {
      host_.budget().releaseCached(chunk.size());  // served from the store only
    }
  }
  if (s) std::memcpy(out.data(), chunk.data() + inChunk, out.size());
  lock.lock();
  doneReading(copy);
  noteStoreRead(index);
  st.busy = false;
  if (cached && (fenced_ || st.where != was)) {
    // Deleted meanwhile (its budget was given back without this), or stored whole by
    // an upload that was on its way: then the copy is clean, as a fetch would be.
    bool keep = !fenced_ && !st.dirty;
    if (!keep) host_.budget().releaseCached(chunk.size());
    cached = keep;
  }
  if (cached) {
    int before = countedAs(st);
    st.where = Where::kCached;  // dirty (and journaled, unless patched): pinned until uploaded
    settlePatch(index, st);     // a patch's cache is part of the whole chunk's now
    recount(index, before, st);
    st.referenced = true;
    markMeta(index, st);
  } else {
    st.rangeReads = 0;  // served from the store only: its reads pay afresh
  }
  cv_.notify_all();
  return s;
}

bool Volume::verifyCached(uint64_t index, std::unique_lock<std::mutex>& lock, bool evict) {
  ChunkState& st = states_[index];
  st.busy = true;  // readers and writers wait: this is quicker than the store
  const bool known = st.crc && !st.remoteZero && !fenced_;
  const uint32_t want = st.crc.value_or(0);
  lock.unlock();
  const uint64_t base = index * row_.chunkSize;
  const uint64_t len = chunkLength(index);
  bool ok = known && (evict ? host_.reserveCache(len) : host_.budget().tryReserveCached(len));
  if (ok) {
    std::span<uint8_t> chunk = threadChunkBuffer(index);
    ok = cache_.read(base, chunk.data(), len) && crc32c(chunk) == want;
    if (!ok) host_.budget().releaseCached(len);
  }
  // Nobody reads the slot of a remote chunk: its bytes go now.
  if (!ok) {
    if (Status p = cache_.punch(base, len); !p) logError("volume " + row_.name + ": " + p.toString());
  }
  lock.lock();
  st.busy = false;
  st.unverified = false;  // (counted as such until now: stats)
  cv_.notify_all();
  if (ok && fenced_) {  // deleted meanwhile: its budget was given back without this
    host_.budget().releaseCached(len);
    ok = false;
  }
  if (ok) {
    st.where = Where::kCached;
    st.referenced = true;
    ++verified_;
  } else {
    ++verifyFailures_;
  }
  markMeta(index, st);  // its row: cached again, or no longer kFlagVerify
  return ok;
}

Volume::Checked Volume::verifyUnverified() {
  Checked done;
  std::unique_lock lock(mu_);
  for (uint64_t i = 0; i < states_.size() && !host_.stopping(); ++i) {
    ChunkState& st = states_[i];
    if (!st.unverified) continue;
    if (st.where != Where::kRemote) {
      st.unverified = false;  // written or zeroed since: its slot is in use, or punched
      // (One an adoption's journal made zeros, or one in the journal only: its slot's
      // bytes go after the next commit.)
      if (st.where == Where::kZero || st.where == Where::kJournal) punchPending_.push_back(i);
      continue;
    }
    if (st.busy) continue;  // a reader or writer is verifying it
    ++done.checked;
    if (verifyCached(i, lock, false)) ++done.kept;
  }
  return done;
}

void Volume::noteContent(ChunkState& st, uint64_t gen, uint32_t crc) {
  if (st.remoteGen != gen || st.remoteZero) return;
  st.crc = crc;
}

uint32_t Volume::wholeRebuildGets(uint64_t index) const {
  uint32_t gets = 1;  // its object (or the span of it no piece holds)
  auto it = journalPieces_.find(index);
  if (it == journalPieces_.end()) return gets;
  // A chunk's pieces are in segment order: one GET per run of the same segment.
  const std::vector<JournalPiece>& pieces = it->second;
  for (size_t i = 0; i < pieces.size() && gets < UINT8_MAX; ++i) {
    if (i == 0 || pieces[i].segment != pieces[i - 1].segment) ++gets;
  }
  return gets;
}

void Volume::scheduleReadAhead(uint64_t from) {
  uint64_t end = std::min<uint64_t>(from + readAheadChunks_, states_.size());
  for (uint64_t i = from; i < end; ++i) {
    const ChunkState& st = states_[i];
    // (An unverified chunk is read from the cache file when its turn comes.)
    if (st.where != Where::kRemote || st.busy || st.unverified || window_.contains(i)) continue;
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
  uint32_t now = engineClockMs();
  for (const RecentRead& r : recentMisses_) {
    // A chunk read from the store lately: one of the chunks just before?
    uint64_t m = r.indexPlusOne;
    if (m != 0 && m <= index && index - m < behind && now - r.atMs < kStreamWindowMs) return true;
  }
  return false;
}

void Volume::noteStoreRead(uint64_t index) {
  RecentRead& last = recentMisses_[(recentMissPos_ + recentMisses_.size() - 1) % recentMisses_.size()];
  if (last.indexPlusOne == index + 1) {
    last.atMs = engineClockMs();
    return;
  }
  recentMisses_[recentMissPos_] = RecentRead{index + 1, engineClockMs()};
  recentMissPos_ = (recentMissPos_ + 1) % recentMisses_.size();
}

std::span<uint8_t> Volume::threadChunkBuffer(uint64_t index) {
  tlsChunkBuffer.resize(row_.chunkSize);
  return std::span(tlsChunkBuffer.data(), chunkLength(index));
}

Status Volume::fetch(uint64_t index, uint64_t gen, std::span<uint8_t> buf) {
  return fetchRange(index, gen, 0, chunkLength(index), buf);
}

Status Volume::fetchRange(uint64_t index, uint64_t gen, uint64_t from, uint64_t to, std::span<uint8_t> buf) {
  std::span<uint8_t> out = buf.subspan(from, to - from);
  host_.bandwidth().download(out.size());
  auto got = storeOf(gen).get(objectKey(index, gen), from, out);
  if (!got) return got.status().withContext("volume " + row_.name + " chunk " + std::to_string(index));
  // An object is the whole chunk, or empty (zeros); one that ends inside the range is
  // not a chunk this gateway wrote.
  if (got.value() != out.size() && got.value() != 0) {
    return Status::corruption("volume " + row_.name + " chunk " + std::to_string(index) + " generation " +
                              std::to_string(gen) + " holds " + std::to_string(got.value()) + " of the " +
                              std::to_string(out.size()) + " bytes at " + std::to_string(from));
  }
  if (got.value() == 0) std::memset(out.data(), 0, out.size());
  downloadedBytes_ += got.value();
  return Status::ok();
}

}  // namespace ferry
