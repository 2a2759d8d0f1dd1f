#include "volume.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "ferry/log.h"
#include "format.h"
#include "journal_format.h"

namespace ferry {

namespace {
// What a chunk counts as in the cache budget.
// kCountedPinned: journaled, but its cache may hold changes its journal pieces lack
// (cacheOnly): out of the upload buffer, not evictable (pinned only).
// kCountedPatched: its changed pages in the upload buffer; the cache its pages take is
// counted by settlePatch, not here.
enum Counted { kNotCounted, kCountedDirty, kCountedJournaled, kCountedPinned, kCountedPatched };

// Whether a chunk counted so pins its whole length / is charged in the upload buffer.
bool pinsWhole(int counted) {
  return counted == kCountedDirty || counted == kCountedJournaled || counted == kCountedPinned;
}
bool chargesDirty(int counted) {
  return counted == kCountedDirty || counted == kCountedPatched;
}
}  // namespace

std::vector<std::pair<uint64_t, uint64_t>> pageRuns(const std::vector<uint64_t>& bits, uint64_t pages, bool set) {
  auto is = [&](uint64_t p) { return (p / 64 < bits.size() && (bits[p / 64] >> (p % 64) & 1)) == set; };
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  uint64_t p = 0;
  while (p < pages) {
    if (!is(p)) {
      ++p;
      continue;
    }
    uint64_t start = p;
    while (p < pages && is(p)) ++p;
    runs.emplace_back(start, p);
  }
  return runs;
}

uint64_t countBits(const std::vector<uint64_t>& bits) {
  uint64_t n = 0;
  for (uint64_t w : bits) n += static_cast<uint64_t>(std::popcount(w));
  return n;
}

// REQUIRES: mu_ held. A fenced volume counts nowhere but in the cached bytes: its
// changes will never be uploaded from here, and must not hold other volumes' writers.
// A journaled chunk counts as journaled (evictable) unless its cache may have changes
// no journal piece has: then it is only pinned until uploaded whole.
int Volume::countedAs(const ChunkState& st) const {
  if (st.where == Where::kPatched && st.dirty && !fenced_) return kCountedPatched;
  if (st.where != Where::kCached || !st.dirty || fenced_) return kNotCounted;
  if (!st.journaled) return kCountedDirty;
  return st.cacheOnly ? kCountedPinned : kCountedJournaled;
}

bool allZero(std::span<const uint8_t> bytes) {
  // Compare word-wise; chunks are large and mostly decided in the first few bytes.
  const uint8_t* p = bytes.data();
  const size_t n = bytes.size();
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

uint32_t engineClockMs() {
  return static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

namespace {
uint64_t readAheadChunksFor(uint64_t bytes, uint64_t chunkSize) {
  return bytes == 0 ? 0 : std::max<uint64_t>(1, bytes / chunkSize);
}

// Whether a page bitmap has the bit of every page that bytes [inChunk, inChunk + length)
// touch; length > 0.
bool allPagesSet(const std::vector<uint64_t>& bits, uint64_t inChunk, uint64_t length) {
  for (uint64_t p = inChunk / kJournalPage; p < pagesFor(inChunk + length); ++p) {
    if (!(bits[p / 64] >> (p % 64) & 1)) return false;
  }
  return true;
}
}  // namespace

Volume::Volume(VolumeHost& host, VolumeRow row, CacheFile cache, uint64_t epoch)
    : host_(host),
      row_(std::move(row)),
      cache_(std::move(cache)),
      epoch_(epoch),
      states_(chunksFor(row_.size, row_.chunkSize)),
      readAheadChunks_(readAheadChunksFor(host.readAheadBytes(), row_.chunkSize)),
      // Room for the chunks ahead of the reader and as many being read, and for the
      // chunk a stream reads in pieces even with read-ahead off.
      window_(static_cast<size_t>(2 * readAheadChunks_ + 2)),
      journal_(host.journalEnabled()) {}

uint64_t Volume::chunkLength(uint64_t index) const {
  return std::min(row_.chunkSize, row_.size - index * row_.chunkSize);
}

std::string Volume::objectKey(uint64_t index, uint64_t gen) const {
  if (gen & kSourceGen) return chunkKey(row_.sourceVolume, index, gen & ~kSourceGen);
  return chunkKey(row_.name, index, gen);
}

Status Volume::load(const std::vector<ChunkRow>& rows) {
  std::vector<uint64_t> toQueue;
  const uint32_t loadedMs = engineClockMs();
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
      st.crc = r.crc;
      const bool patched = st.dirty && (r.flags & kFlagPatched) != 0;
      st.journaled = st.dirty && !patched && (r.flags & kFlagJournaled) != 0;
      if (patched && (r.flags & kFlagJournaled)) patchedWithPieces_.push_back(r.index);
      const uint64_t pages = pageCount(r.index);
      // A cached chunk changed and not journaled: the pages its row says changed, or
      // all of them (a row written before page maps were kept). One a crash left
      // (kFlagCacheOnly) may hold later writes in its cache too, which its whole upload
      // stores: it stays in the cache until then (cacheOnly, below).
      if (st.dirty && !st.journaled && !patched && journal_) {
        if ((r.flags & kFlagCached) && r.pages.size() == pageMapWords(pages) && countBits(r.pages) != 0) {
          pages_[r.index] = r.pages;
        } else {
          markAllPages(r.index);
        }
      }
      if (patched) {
        // Its newest pages are in the cache file, as the row's page map says.
        if (r.pages.size() != pageMapWords(pages)) {
          return Status::corruption("volume " + row_.name + ": chunk " + std::to_string(r.index) +
                                    " has a page map of the wrong size");
        }
        st.where = Where::kPatched;
        if (countBits(r.pages) != 0) pages_[r.index] = r.pages;
        recount(r.index, kNotCounted, st);
        settlePatch(r.index, st);
      } else if (r.flags & kFlagCached) {
        // Its cache may hold writes newer than the row (a crash before their commit:
        // Metadata::markChangesUnsure): only its whole upload may leave the cache.
        // Rows a clean stop committed, once writes had ended, are exact.
        st.cacheOnly = st.dirty && (r.flags & kFlagCacheOnly) != 0;
        st.where = Where::kCached;
        host_.budget().forceCached(chunkLength(r.index));
        recount(r.index, kNotCounted, st);
      } else if (st.journaled) {
        st.where = Where::kJournal;  // openJournal reads the pieces that rebuild it
      } else {
        // Dirty and not cached: zeroed, its tombstone not stored yet.
        st.where = (!st.dirty && r.remoteGen != 0 && !st.remoteZero) ? Where::kRemote : Where::kZero;
        // A clean cached chunk a crash left unsure: its slot is kept until checked.
        st.unverified = st.where == Where::kRemote && st.crc && (r.flags & kFlagVerify) != 0;
      }
      if (st.dirty) {
        toQueue.push_back(r.index);
        ++dirtyChunks_;
        // Its upload-delay and upload-max-age count from now (they counted from the
        // clock's zero: every dirty chunk went up whole at once after each start, the
        // journaled ones too, competing with the writes for the store).
        st.dirtySinceMs = st.lastWriteMs = loadedMs;
        // An upload of it given up on, or in flight when the gateway stopped, may have
        // stored an object nobody recorded, of a generation below this run's: zeros
        // then need a tombstone over it. The next upload, above it, clears this.
        lateCopies_[r.index] = epoch_ << 32;
      }
      if (r.remoteGen & kSourceGen) ++hydrationLeft_;
    }
    if (hydrationLeft_ > 0 && row_.sourceVolume.empty()) {
      return Status::corruption("volume " + row_.name + ": metadata names chunks of a source volume, but none is set");
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

void Volume::punchUncached() {
  std::lock_guard lock(mu_);
  // One punch per run of such chunks: as many as there are cached runs, however large
  // the volume.
  auto holds = [&](uint64_t i) {
    const ChunkState& st = states_[i];
    return st.where == Where::kCached || st.where == Where::kPatched || st.unverified;
  };
  uint64_t i = 0;
  while (i < states_.size()) {
    if (holds(i)) {
      ++i;
      continue;
    }
    uint64_t end = i;
    while (end < states_.size() && !holds(end)) ++end;
    const uint64_t from = i * row_.chunkSize;
    const uint64_t to = std::min(end * row_.chunkSize, row_.size);
    // A failed punch only leaves stale bytes, which are overwritten before use.
    if (Status s = cache_.punch(from, to - from); !s) logError("volume " + row_.name + ": " + s.toString());
    i = end;
  }
}

ChunkRow Volume::rowOf(uint64_t index, const ChunkState& st) const {
  uint32_t flags = 0;
  if (st.where == Where::kCached) flags |= kFlagCached;
  if (st.dirty) flags |= kFlagDirty;
  if (st.remoteZero) flags |= kFlagRemoteZero;
  if (st.journaled) flags |= kFlagJournaled;
  if (st.pinnedUntilStored()) flags |= kFlagCacheOnly;
  if (st.awaitsCheck()) flags |= kFlagVerify;
  ChunkRow row{index, st.remoteGen, flags, {}, st.crc};
  // Cached, changed and not journaled: which pages changed, for a start after a crash
  // to count only those in the upload buffer (and let the journal take them).
  if (st.where == Where::kCached && st.dirty && !st.journaled && journal_) row.pages = patchPages(index);
  if (st.where == Where::kPatched) {
    // Patched: kFlagJournaled says it has pieces in the journal (a start checks they
    // are there).
    if (journalPieces_.count(index) != 0) row.flags |= kFlagJournaled;
    row.flags |= kFlagPatched;
    row.pages = patchPages(index);
  }
  return row;
}

void Volume::markMeta(uint64_t index, ChunkState& st) {
  if (!st.metaPending) {
    st.metaPending = true;
    metaPendingList_.push_back(index);
  }
}

void Volume::recount(uint64_t index, int before, ChunkState& st) {
  int after = countedAs(st);
  if (before == after) return;
  uint64_t len = chunkLength(index);
  CacheBudget& budget = host_.budget();
  if (!pinsWhole(before) && pinsWhole(after)) budget.addPinned(len);
  if (chargesDirty(before)) {
    budget.releaseDirty(st.charged);
    st.charged = 0;
  }
  if (before == kCountedJournaled) budget.releaseJournaled(len);
  if (chargesDirty(after)) {
    st.charged = static_cast<uint32_t>(dirtyCharge(index));
    budget.addDirty(st.charged);
  }
  if (after == kCountedJournaled) budget.addJournaled(len);
  if (pinsWhole(before) && !pinsWhole(after)) budget.releasePinned(len);
}

uint64_t Volume::dirtyCharge(uint64_t index) const {
  uint64_t len = chunkLength(index);
  // (A patched chunk left by a run with the journal on counts its pages all the same.)
  if (!journal_ && states_[index].where != Where::kPatched) return len;
  uint64_t pages = 0;
  if (auto it = pages_.find(index); it != pages_.end()) pages = countBits(it->second);
  return std::min(len, std::max<uint64_t>(pages, 1) * kJournalPage);
}

void Volume::recharge(uint64_t index, ChunkState& st) {
  if (!chargesDirty(countedAs(st)) || st.journaling) return;
  uint64_t now = dirtyCharge(index);
  if (now > st.charged) host_.budget().addDirty(now - st.charged);
  if (now < st.charged) host_.budget().releaseDirty(st.charged - now);
  st.charged = static_cast<uint32_t>(now);
}

bool Volume::pagesMarked(uint64_t index, uint64_t inChunk, uint64_t length) const {
  auto it = pages_.find(index);
  if (it == pages_.end() || length == 0) return length == 0;
  return allPagesSet(it->second, inChunk, length);
}

// REQUIRES: mu_ held. Keeps the upload buffer equal to the charges of cached dirty
// chunks not journaled (recount).
void Volume::setDirty(uint64_t index, ChunkState& st, bool dirty) {
  if (st.dirty == dirty) return;
  int before = countedAs(st);
  st.dirty = dirty;
  st.journaled = false;
  if (dirty) {
    st.dirtySinceMs = engineClockMs();
    ++dirtyChunks_;
  } else {
    --dirtyChunks_;
  }
  recount(index, before, st);
  markMeta(index, st);
}

void Volume::setJournaled(uint64_t index, ChunkState& st, bool journaled) {
  if (st.journaled == journaled || (journaled && !st.dirty)) return;
  int before = countedAs(st);
  st.journaled = journaled;
  recount(index, before, st);
  markMeta(index, st);
}

void Volume::markPages(uint64_t index, uint64_t inChunk, uint64_t length) {
  if (!journal_ || length == 0) return;
  uint64_t pages = pageCount(index);
  auto& bits = pages_[index];
  if (bits.empty()) bits.assign(pageMapWords(pages), 0);
  for (uint64_t p = inChunk / kJournalPage; p < pagesFor(inChunk + length); ++p) {
    bits[p / 64] |= uint64_t{1} << (p % 64);
  }
  recharge(index, states_[index]);
}

void Volume::markAllPages(uint64_t index) {
  markPages(index, 0, chunkLength(index));
}

std::vector<uint64_t> Volume::patchPages(uint64_t index) const {
  const uint64_t pages = pageCount(index);
  std::vector<uint64_t> bits(pageMapWords(pages), 0);
  for (const auto* map : {&pages_, &journalingPages_}) {
    auto it = map->find(index);
    if (it == map->end()) continue;
    for (size_t w = 0; w < bits.size() && w < it->second.size(); ++w) bits[w] |= it->second[w];
  }
  return bits;
}

std::vector<uint64_t> Volume::keepPages(uint64_t index) const {
  std::vector<uint64_t> bits = patchPages(index);
  auto [from, to] = writing_.equal_range(index);
  for (auto it = from; it != to; ++it) {
    for (uint64_t p = it->second.first; p < it->second.second; ++p) bits[p / 64] |= uint64_t{1} << (p % 64);
  }
  return bits;
}

bool Volume::patchCovers(uint64_t index, uint64_t inChunk, uint64_t length) const {
  return length == 0 || allPagesSet(patchPages(index), inChunk, length);
}

bool Volume::patchable(uint64_t index, uint64_t inChunk, uint64_t length, const ChunkState& st,
                       uint64_t reserved) const {
  if (!journal_ || !journalOpen_.load() || fenced_ || length == 0) return false;
  const uint64_t len = chunkLength(index);
  // Whole pages (the last may end the chunk), and not the whole chunk: that is cached
  // without reading anything anyway.
  if (inChunk % kJournalPage != 0 || (length % kJournalPage != 0 && inChunk + length != len)) return false;
  if (inChunk == 0 && length == len) return false;
  const CacheBudget& budget = host_.budget();
  switch (st.where) {
    case Where::kPatched:
    case Where::kJournal:
    case Where::kRemote:
      return true;  // cached whole, it would be read from the store first
    case Where::kZero:
      // Zeroed over stored data: its object is not its content. Never written: cached
      // whole while the cache has room for it (reads of it then stay local), patched
      // once that would evict.
      return !st.dirty && budget.cached() - std::min(reserved, budget.cached()) + len > budget.cacheLimit();
    case Where::kCached:
      return false;
  }
  return false;
}

void Volume::settlePatch(uint64_t index, ChunkState& st) {
  uint64_t want = 0;
  if (st.where == Where::kPatched) {
    want = std::min(chunkLength(index), countBits(keepPages(index)) * kJournalPage);
  }
  CacheBudget& budget = host_.budget();
  if (want > st.patchBytes) {
    budget.forceCached(want - st.patchBytes);  // the writer reserved it beforehand
    if (!fenced_) budget.addPinned(want - st.patchBytes);
  } else if (want < st.patchBytes) {
    budget.releaseCached(st.patchBytes - want);
    if (!fenced_) budget.releasePinned(st.patchBytes - want);
  }
  st.patchBytes = static_cast<uint32_t>(want);
  // Every change in stored segments: evicted into the journal, as a journaled chunk
  // leaving the cache would be (not while anyone reads or writes its pages).
  if (st.where == Where::kPatched && want == 0 && st.dirty && !st.busy && !st.journaling && !st.uploading &&
      st.ioRefs.load() == 0 && writing_.count(index) == 0 && journalPieces_.count(index) != 0) {
    int before = countedAs(st);
    st.where = Where::kJournal;
    st.journaled = true;
    recount(index, before, st);
    markMeta(index, st);
    punchPending_.push_back(index);
  }
}

Status Volume::writeAround(uint64_t index, std::span<const uint8_t> buf, const std::vector<uint64_t>& skip) {
  const uint64_t len = chunkLength(index);
  const uint64_t base = index * row_.chunkSize;
  for (auto [first, end] : pageRuns(skip, pageCount(index), false)) {
    const uint64_t from = first * kJournalPage;
    const uint64_t to = std::min(end * kJournalPage, len);
    if (Status s = cache_.write(base + from, buf.data() + from, to - from); !s) return s;
  }
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

// REQUIRES: the caller set states_[index].busy and reserved the chunk's room in the
// cache. Brings the chunk into the cache file: fills it from the store (or the
// journal, from `copy`), or makes it zeros, unless the caller is about to overwrite
// all of it.
Status Volume::materialize(uint64_t index, Where where, uint64_t gen, const JournalCopy& copy, bool overwriteAll) {
  uint64_t len = chunkLength(index);
  uint64_t base = index * row_.chunkSize;
  Status s;
  if (!overwriteAll) {
    // A writer waits on this read: it goes before uploads at the store.
    const bool fromStore = where == Where::kRemote || where == Where::kJournal || where == Where::kPatched;
    StorePriority::Client turn = fromStore ? host_.storePriority().client() : StorePriority::Client();
    if (where == Where::kRemote) {
      std::span<uint8_t> chunk = threadChunkBuffer(index);
      s = fetch(index, gen, chunk);
      turn.end();
      if (s) s = cache_.write(base, chunk.data(), len);
    } else if (where == Where::kJournal || where == Where::kPatched) {
      std::span<uint8_t> chunk = threadChunkBuffer(index);
      s = rebuild(index, copy, chunk);
      turn.end();
      // Around a patch's pages, and those writers are still writing there.
      if (s) s = writeAround(index, chunk, copy.keep);
    } else {
      // The cache file may hold stale bytes from before a crash: make them zeros.
      s = cache_.punch(base, len);
    }
  }
  return s;
}

Status Volume::writePiece(uint64_t index, uint64_t inChunk, std::span<const uint8_t> data, bool zero) {
  uint64_t base = index * row_.chunkSize;
  uint64_t len = chunkLength(index);
  // Room taken in the cache for the chunk, given back unless the chunk gets it.
  struct Room {
    CacheBudget& budget;
    uint64_t bytes = 0;
    ~Room() {
      if (bytes) budget.releaseCached(bytes);
    }
  } room{host_.budget()};
  std::unique_lock lock(mu_);
  for (;;) {
    if (fenced_) return Status::fenced("volume " + row_.name + " " + lastError_);
    ChunkState& st = states_[index];
    if (st.busy) {
      cv_.wait(lock);
      continue;
    }
    if (preserveFrozen(index, lock)) continue;  // a snapshot needs its content first
    if (st.awaitsCheck()) {
      verifyCached(index, lock);  // from the cache file if it holds it, not the store
      continue;
    }
    // Adds to the upload buffer: a chunk not yet dirty, or with the journal on, pages
    // not yet changed.
    bool addsDirty = !chargesDirty(countedAs(st)) || (journal_ && !pagesMarked(index, inChunk, data.size()));
    if (addsDirty && host_.budget().dirtyFull()) {
      // Back-pressure: the upload buffer is full; wait for the uploader to drain.
      lock.unlock();
      if (host_.stopping()) return Status::unavailable("gateway is shutting down");
      host_.budget().waitForDirtyRoom(std::chrono::milliseconds(200));
      lock.lock();
      continue;
    }
    // Whole pages of a chunk not cached: written to the cache file as they are (the
    // chunk patched), without reading the rest of it from the store.
    const bool patch = patchable(index, inChunk, data.size(), st, room.bytes);
    const std::pair<uint64_t, uint64_t> pages{inChunk / kJournalPage, pagesFor(inChunk + data.size())};
    uint64_t need = patch ? pagesFor(data.size()) * kJournalPage : len;
    if (patch && st.where == Where::kPatched && patchCovers(index, inChunk, data.size())) need = 0;  // its pages
    if (st.where != Where::kCached && room.bytes < need) {
      // Room first, without holding the chunk busy: an upload of it (one in the
      // journal is dirty) must not wait on a writer that waits for uploads to make room.
      lock.unlock();
      const uint64_t more = need - room.bytes;
      if (!host_.reserveCache(more)) {
        CacheBudget& budget = host_.budget();
        budget.addRoomWaiter();
        do {
          if (host_.stopping()) {
            budget.removeRoomWaiter();
            return Status::unavailable("gateway is shutting down");
          }
          budget.waitForRelease(std::chrono::milliseconds(100));
        } while (!host_.reserveCache(more));
        budget.removeRoomWaiter();
      }
      room.bytes = need;
      lock.lock();
      continue;  // look again: it may have changed meanwhile
    }
    if (patch) {
      if (st.where != Where::kPatched) {
        int before = countedAs(st);
        st.where = Where::kPatched;
        st.journaled = false;
        recount(index, before, st);
      }
      // Marked once the bytes are there; until then a fill of the whole chunk (a read,
      // a write of part of a page) keeps off them, and they count in its cache.
      writing_.emplace(index, pages);
      const uint64_t had = st.patchBytes;
      settlePatch(index, st);
      // Its cache is the patch's now: out of the room reserved above.
      const uint64_t taken = std::min<uint64_t>(st.patchBytes - std::min<uint64_t>(had, st.patchBytes), room.bytes);
      host_.budget().releaseCached(taken);
      room.bytes -= taken;
    } else if (st.where != Where::kCached) {
      st.busy = true;
      const Where where = st.where;
      const uint64_t gen = st.remoteGen;
      const bool overwriteAll = !zero && inChunk == 0 && data.size() == len;
      // What rebuilds it, taken with `where`: busy keeps writers and readers off, but
      // an upload of it on its way may finish meanwhile and drop its pieces (it is
      // then clean, and this copy still rebuilds what the upload stored).
      JournalCopy copy;
      const bool rebuilds = !overwriteAll && (where == Where::kJournal || where == Where::kPatched);
      if (rebuilds) copy = journalCopy(index);
      lock.unlock();
      Status s = materialize(index, where, gen, copy, overwriteAll);
      lock.lock();
      if (rebuilds) doneReading(copy);
      st.busy = false;
      cv_.notify_all();
      if (!s) return s;
      room.bytes = 0;  // the chunk's now
      if (fenced_) {
        // Deleted (or lost) meanwhile: its budget was given back without this chunk.
        host_.budget().releaseCached(len);
        return Status::fenced("volume " + row_.name + " " + lastError_);
      }
      bool wasDirty = st.dirty;
      if (where == Where::kJournal || where == Where::kPatched) {
        // Its changes so far are in the journal (and a patch's pages in the page map):
        // pinned whole again, and the write below marks only its own pages.
        int before = countedAs(st);
        st.where = Where::kCached;
        settlePatch(index, st);  // the patch's cache is part of the whole chunk's now
        recount(index, before, st);
        markMeta(index, st);
      } else {
        setDirty(index, st, false);  // re-added below, now counted against the cached bytes
        st.where = Where::kCached;
      }
      if (wasDirty && where != Where::kJournal && where != Where::kPatched) {
        // Zeroed with data still in the store: all of it differs from the store.
        setDirty(index, st, true);
        markAllPages(index);
      }
    }
    // Pinned while the bytes travel to the cache file: not evictable. The change is
    // counted (writeSeq) only once the bytes are there, so an upload that copied the
    // chunk before they landed cannot mark it clean.
    setDirty(index, st, true);
    setJournaled(index, st, false);
    st.referenced = true;
    st.ioRefs.fetch_add(1);
    lock.unlock();
    // Before the bytes can be there: a kill from here on leaves the mark. A patch too:
    // its pages count only once in its committed page map, but the row of a chunk
    // evicted since its last commit still says "cached" over them. (Outside the lock,
    // a page fault of the map's; no commit clears it while ioRefs counts this write.)
    if (written_) written_->mark(index);
    Status s =
        zero ? cache_.punch(base + inChunk, data.size()) : cache_.write(base + inChunk, data.data(), data.size());
    if (s.code() == Code::kNoSpace && !zero) {
      // The cache disk is full: evict what can go, commit (which punches the holes of
      // these and earlier evictions), and try once more.
      evictSome(64);
      bool pending;
      {
        std::lock_guard relock(mu_);
        pending = !punchPending_.empty();
      }
      if (pending && persist()) s = cache_.write(base + inChunk, data.data(), data.size());
    }
    lock.lock();
    st.ioRefs.fetch_sub(1);
    if (patch) {
      auto [from, to] = writing_.equal_range(index);
      auto mine = std::find_if(from, to, [&](const auto& w) { return w.second == pages; });
      writing_.erase(mine);  // (one of the same range, if two write it: either will do)
      // Zeros over the whole chunk (kZero) in between, which leave nothing stored:
      // zeros with these pages over them. (An upload does not finish meanwhile.)
      if (s && st.where == Where::kZero && !st.dirty && !fenced_) st.where = Where::kPatched;
    }
    setDirty(index, st, true);       // an upload may have finished in between
    setJournaled(index, st, false);  // a segment may have been written in between
    // A patch that failed is not marked: those pages of the cache file are not the
    // chunk's (a cached chunk's are, whatever the write left there).
    if (s || !patch) markPages(index, inChunk, data.size());
    if (patch) settlePatch(index, st);  // its cache: its pages now
    ++st.writeSeq;
    ++changes_;
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
  uint64_t len = chunkLength(index);
  std::unique_lock lock(mu_);
  for (;;) {
    if (fenced_) return Status::fenced("volume " + row_.name + " " + lastError_);
    ChunkState& st = states_[index];
    // Nor while a segment holding some of its pages is on its way: stored after the
    // zeros, it would give the chunk pieces of what they replaced.
    if (st.busy || st.journaling) {
      cv_.wait(lock);
      continue;
    }
    if (preserveFrozen(index, lock)) continue;  // a snapshot needs its content first
    // An upload in flight is about to store the content being zeroed: the zeros need a
    // tombstone after it (and a write after them changes all of it, not a few pages).
    bool remoteHasData = (st.remoteGen != 0 && !st.remoteZero) || lateCopyAbove(index, st.remoteGen) ||
                         journalHolds(index, st) || st.uploading;
    if (st.where == Where::kZero && st.dirty == remoteHasData) return Status::ok();  // already zero
    if (st.unverified) {
      // Its slot's bytes will never be checked now: they go after the next commit.
      st.unverified = false;
      punchPending_.push_back(index);
    }
    if (st.where == Where::kCached) {
      // Its bytes in the cache file go once the row saying "zero" is committed (as an
      // evicted chunk's do): a crash before that finds the row saying "cached" over
      // the bytes it means, not over zeros that an eviction would then swap for the
      // stored content.
      setDirty(index, st, false);  // gives back the dirty budget while still counted as cached
      host_.budget().releaseCached(len);
      punchPending_.push_back(index);
    }
    // Its changes in the journal no longer make its content (their segments stay until
    // a tombstone voids them); until stored whole, only the cache can have it.
    if (st.where == Where::kJournal || st.where == Where::kPatched) st.journaled = false;
    // A patch's pages in the cache file go after the next commit.
    if (st.where == Where::kPatched) punchPending_.push_back(index);
    journalPieces_.erase(index);
    const int before = countedAs(st);  // a patch's changed pages leave the upload buffer
    st.where = Where::kZero;
    recount(index, before, st);
    ++st.writeSeq;
    ++changes_;
    setDirty(index, st, remoteHasData);
    st.cacheOnly = st.dirty;  // (not counted anywhere while zero)
    pages_.erase(index);
    if (st.dirty) markAllPages(index);
    settlePatch(index, st);  // no longer patched: its cache goes
    markMeta(index, st);
    if (st.dirty && !st.queued) {
      st.queued = true;
      lock.unlock();
      host_.enqueueUpload(shared_from_this(), index);
    }
    return Status::ok();
  }
}

uint64_t Volume::evictSome(size_t maxChunks) {
  size_t picked = 0;
  uint64_t freed = 0;
  {
    std::lock_guard lock(mu_);
    // Into the journal only while the store is reachable under the lease: a chunk
    // evicted there can only be read back from the store.
    const bool toStore = !fenced_ && bool(leaseCheck());
    size_t n = states_.size();
    for (size_t step = 0; step < 2 * n && picked < maxChunks; ++step) {
      uint64_t i = clockHand_;
      clockHand_ = (clockHand_ + 1) % n;
      ChunkState& st = states_[i];
      if (st.where == Where::kPatched) settlePatch(i, st);  // back to kJournal once it can
      // A fenced volume's changes will never be uploaded from here: when the cache
      // needs the room they go too (reads of them then fetch this gateway's last known
      // object, which the new owner may have replaced).
      if (st.where != Where::kCached || st.busy || st.uploading || st.journaling || st.ioRefs.load() != 0) continue;
      // A dirty chunk goes only when the journal holds all its changes (and no
      // snapshot still needs to copy it from the cache).
      bool toJournal = st.dirty && !fenced_;
      if (toJournal && (!toStore || !st.journaled || st.frozen || st.cacheOnly || journalPieces_.count(i) == 0)) {
        continue;
      }
      if (st.referenced) {
        st.referenced = false;
        continue;
      }
      st.rangeReads = 0;  // its small reads are counted afresh (readPiece, readJournaled)
      if (toJournal) {
        int before = countedAs(st);
        st.where = Where::kJournal;
        recount(i, before, st);
      } else {
        setDirty(i, st, false);
        st.where = (st.remoteGen != 0 && !st.remoteZero) ? Where::kRemote : Where::kZero;
      }
      markMeta(i, st);
      // The rows must say "not cached" durably before the hole is punched; otherwise
      // a crash in between would leave rows pointing at zeros. The next persist()
      // punches it; until then a crash finds the rows saying "cached" over the bytes.
      punchPending_.push_back(i);
      freed += chunkLength(i);
      ++picked;
    }
  }
  if (freed) host_.budget().releaseCached(freed);
  return freed;
}

Status Volume::persist() {
  std::lock_guard plock(persistMu_);
  std::vector<ChunkRow> rows;
  std::vector<uint64_t> indexes;
  std::vector<uint32_t> seqs;  // each chunk's writeSeq in the rows committed
  std::vector<std::string> superseded;
  {
    std::lock_guard lock(mu_);
    indexes.swap(metaPendingList_);
    rows.reserve(indexes.size());
    seqs.reserve(indexes.size());
    for (uint64_t i : indexes) {
      states_[i].metaPending = false;
      rows.push_back(rowOf(i, states_[i]));
      seqs.push_back(states_[i].writeSeq);
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
  std::unique_lock lock(mu_);
  if (!s) {
    for (uint64_t i : indexes) markMeta(i, states_[i]);
    supersededPending_.insert(supersededPending_.end(), superseded.begin(), superseded.end());
    lastError_ = s.toString();
    return s.withContext("persist volume " + row_.name);
  }
  supersededReady_.insert(supersededReady_.end(), superseded.begin(), superseded.end());
  if (written_) {
    // The rows hold every write of a chunk with no write since (writeSeq) and none in
    // flight (ioRefs, readers too: those only keep the mark to the next commit).
    for (size_t n = 0; n < indexes.size(); ++n) {
      const ChunkState& st = states_[indexes[n]];
      if (st.writeSeq == seqs[n] && st.ioRefs.load() == 0) written_->clear(indexes[n]);
    }
  }
  // Evicted chunks whose rows now say "not cached": their space on the cache disk goes.
  // (One cached again meanwhile holds its content there; one changed since this
  // commit waits for the next.) A failed punch only leaves stale bytes, which are
  // overwritten or punched before use.
  // Patched since: around its pages.
  std::vector<std::pair<uint64_t, std::vector<uint64_t>>> punch;
  std::vector<uint64_t> later;
  for (uint64_t i : punchPending_) {
    ChunkState& st = states_[i];
    if (st.where == Where::kCached) continue;  // cached again: its content is there
    // Not while anyone may still read the bytes there.
    if (st.metaPending || st.busy || st.uploading || st.journaling || st.ioRefs.load() != 0) {
      later.push_back(i);
      continue;
    }
    st.busy = true;
    punch.emplace_back(i, st.where == Where::kPatched ? keepPages(i) : std::vector<uint64_t>());
  }
  punchPending_.swap(later);
  if (punch.empty()) return Status::ok();
  lock.unlock();
  Status punched;
  for (const auto& [i, keep] : punch) {
    const uint64_t len = chunkLength(i);
    for (auto [first, end] : pageRuns(keep, pageCount(i), false)) {
      const uint64_t from = first * kJournalPage;
      if (Status p = cache_.punch(i * row_.chunkSize + from, std::min(end * kJournalPage, len) - from); !p) punched = p;
    }
  }
  lock.lock();
  for (const auto& entry : punch) states_[entry.first].busy = false;
  if (!punched) lastError_ = punched.toString();
  cv_.notify_all();
  return Status::ok();
}

void Volume::deleteSuperseded() {
  if (!leaseCheck()) return;  // they wait for the next renewal
  std::vector<std::string> keys;
  {
    std::lock_guard lock(mu_);
    keys.swap(supersededReady_);
    // A snapshot still needs these: unpin() hands them back when it no longer does.
    std::erase_if(keys, [&](const std::string& k) { return pinnedKey(k); });
    // A chunk being rebuilt reads these: they wait for the next round.
    std::erase_if(keys, [&](const std::string& k) {
      if (reading_.count(k) == 0) return false;
      supersededReady_.push_back(k);
      return true;
    });
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    bool lapsed = false;
    removeUnderLease(keys[i], &lapsed);
    if (lapsed) {
      // The lease ran out meanwhile: this one and the rest wait for the next renewal.
      std::lock_guard lock(mu_);
      supersededReady_.insert(supersededReady_.end(), keys.begin() + static_cast<long>(i), keys.end());
      return;
    }
  }
}

bool Volume::waitClean(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [&] { return dirtyChunks_ == 0 || fenced_; }) && dirtyChunks_ == 0;
}

std::vector<std::pair<uint64_t, uint64_t>> Volume::remoteMap() {
  std::lock_guard lock(mu_);
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (uint64_t i = 0; i < states_.size(); ++i) {
    // The volume's own objects: not those it still reads from a snapshot's volume.
    uint64_t gen = states_[i].remoteGen;
    if (gen != 0 && !states_[i].remoteZero && !(gen & kSourceGen)) out.emplace_back(i, gen);
  }
  return out;
}

std::vector<ChunkKey> Volume::pinCurrent() {
  std::lock_guard lock(mu_);
  std::vector<ChunkKey> out;
  for (uint64_t i = 0; i < states_.size(); ++i) {
    if (states_[i].remoteGen != 0 && !states_[i].remoteZero) {
      out.push_back({i, states_[i].remoteGen});
      pins_.add(i, states_[i].remoteGen);
    }
  }
  return out;
}

void Volume::pin(const std::vector<ChunkKey>& keys) {
  std::lock_guard lock(mu_);
  for (const ChunkKey& k : keys) {
    pins_.add(k.index, k.generation);
    // Above the chunk's newest known object (a snapshot's copy, or an upload whose row
    // a crash kept from being committed): zeros over the chunk need a tombstone.
    if (k.index < states_.size() && !(states_[k.index].remoteGen & kSourceGen) &&
        k.generation > states_[k.index].remoteGen) {
      uint64_t& late = lateCopies_[k.index];
      late = std::max(late, k.generation);
    }
  }
}

std::vector<std::string> Volume::unpin(const std::vector<ChunkKey>& keys) {
  std::lock_guard lock(mu_);
  std::vector<std::string> deletable;
  for (const ChunkKey& k : keys) {
    if (!pins_.release(k.index, k.generation)) continue;  // not pinned, or pinned by another too
    // Still the volume's newest generation (or being replaced right now: the upload
    // then supersedes it and deleteSuperseded takes it): keep.
    if (k.index < states_.size() && states_[k.index].remoteGen == k.generation) continue;
    // Superseded, and on its way out through persist() and deleteSuperseded (which no
    // longer skips it): not before the metadata stops pointing at it.
    std::string key = chunkKey(row_.name, k.index, k.generation);
    if (queuedForDeletion(key)) continue;
    deletable.push_back(key);
  }
  return deletable;
}

bool Volume::collectable(uint64_t index, uint64_t generation) {
  std::lock_guard lock(mu_);
  if (index >= states_.size()) return true;  // past the end of the volume: nobody reads it
  const ChunkState& st = states_[index];
  if (st.remoteGen == generation || st.uploading) return false;
  return !pins_.contains(index, generation) && !queuedForDeletion(chunkKey(row_.name, index, generation));
}

bool Volume::pinnedKey(const std::string& key) const {
  std::string prefix = chunksPrefix(row_.name);
  if (!key.starts_with(prefix)) return false;  // a journal segment: never pinned
  auto k = parseChunkKey(std::string_view(key).substr(prefix.size()));
  return k && pins_.contains(k->index, k->generation);
}

bool Volume::queuedForDeletion(const std::string& key) const {
  auto in = [&](const std::vector<std::string>& v) { return std::find(v.begin(), v.end(), key) != v.end(); };
  return in(supersededPending_) || in(supersededReady_);
}

Status Volume::leaseCheck() const {
  if (fenced_) return Status::fenced("volume " + row_.name + " is fenced (deleted, or taken over by another gateway)");
  if (leaseValidUntil_.load() > std::chrono::steady_clock::now().time_since_epoch().count()) return Status::ok();
  std::string why;
  {
    std::lock_guard lock(leaseMu_);
    why = leaseError_.empty() ? "is the store reachable?" : "its renewal failed: " + leaseError_;
  }
  return Status::unavailable("volume " + row_.name + ": its lease has not been confirmed in the store lately (" + why +
                             "); changes to the store wait for a renewal");
}

Status Volume::underLease(const std::function<Status()>& op) const {
  if (Status s = leaseCheck(); !s) return s;
  using Clock = std::chrono::steady_clock;
  StoreDeadline deadline(Clock::time_point(Clock::duration(leaseValidUntil_.load())) +
                         std::chrono::milliseconds(leaseGraceMs_.load()));
  return op();
}

Status Volume::removeUnderLease(const std::string& key, bool* leaseLapsed) {
  Status s = underLease([&] { return host_.store().remove(key); });
  if (s) {
    *leaseLapsed = false;
    return s;
  }
  Status lease = leaseCheck();
  *leaseLapsed = !lease;
  if (!lease) return lease;  // not noted: it would hide why the volume was fenced
  noteError("delete " + key + ": " + s.toString());
  return s;
}

uint64_t Volume::fence(const std::string& why) {
  std::lock_guard lock(mu_);
  lastError_ = why;
  std::vector<int> before(states_.size());
  for (uint64_t i = 0; i < states_.size(); ++i) before[i] = countedAs(states_[i]);
  const bool wasFenced = fenced_.exchange(true);
  // Out of the upload buffer and the pinned count; still cached and dirty, so that
  // reads go on returning what was written here (until evicted: evictSome).
  uint64_t kept = 0;
  for (uint64_t i = 0; i < states_.size(); ++i) {
    ChunkState& st = states_[i];
    recount(i, before[i], st);
    // (settlePatch pins a patch only while not fenced)
    if (st.where == Where::kPatched && !wasFenced) host_.budget().releasePinned(st.patchBytes);
    if (st.dirty && st.where != Where::kZero && st.where != Where::kRemote) ++kept;
  }
  cv_.notify_all();
  return kept;
}

bool Volume::waitStoreWrites(std::chrono::milliseconds margin) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point limit = Clock::time_point(Clock::duration(leaseValidUntil_.load())) +
                                  std::chrono::milliseconds(leaseGraceMs_.load()) + margin;
  std::unique_lock lock(mu_);
  for (;;) {
    const bool out =
        std::any_of(states_.begin(), states_.end(), [](const ChunkState& st) { return st.uploading || st.journaling; });
    if (!out) return true;
    if (Clock::now() >= limit) return false;
    cv_.wait_for(lock, std::chrono::milliseconds(20));  // (not every end of one notifies)
  }
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
      if (st.where == Where::kPatched) {
        ++v.patchedChunks;
        v.cachedBytes += st.patchBytes;
        v.dirtyBytes += st.patchBytes;
      }
      if (st.queued) ++v.queued;
      if (st.remoteGen != 0 && !st.remoteZero) ++v.remoteChunks;
    }
    v.lastError = lastError_;
    v.dirtyChunks = dirtyChunks_;
    v.journalSegments = segmentLive_.size();
    for (const ChunkState& st : states_) {
      v.journaledChunks += st.journaled ? 1 : 0;
      v.journalOnlyChunks += st.where == Where::kJournal ? 1 : 0;
      v.cacheOnlyChunks += st.pinnedUntilStored() ? 1 : 0;
      v.unverifiedChunks += st.awaitsCheck() ? 1 : 0;
    }
    if (hydrating()) {
      v.source = row_.sourceVolume + "/" + row_.sourceSnapshot;
      if (!row_.sourceStore.empty()) v.source = row_.sourceStore + " " + v.source;
    }
  }
  v.uploadedBytes = uploadedBytes_;
  v.downloadedBytes = downloadedBytes_;
  v.uploads = uploads_;
  v.uploadErrors = uploadErrors_;
  v.readHits = readHits_;
  v.readMisses = readMisses_;
  v.rangeReads = rangeReads_;
  v.journalReads = journalReads_;
  v.zeroReads = zeroReads_;
  v.readAheadFetches = readAheadFetches_;
  v.readAheadHits = readAheadHits_;
  v.verifiedChunks = verified_;
  v.verifyFailures = verifyFailures_;
  v.journalWrites = journalWrites_;
  v.journalBytes = journalBytes_;
  v.fenced = fenced_;
  v.hydrationLeft = hydrationLeft_;
  v.hydratedBytes = hydratedBytes_;
  return v;
}

void Volume::releaseBudget() {
  std::lock_guard lock(mu_);
  for (uint64_t i = 0; i < states_.size(); ++i) {
    ChunkState& st = states_[i];
    if (st.where != Where::kCached && st.where != Where::kPatched) continue;
    int before = countedAs(st);
    if (st.where == Where::kCached) host_.budget().releaseCached(chunkLength(i));
    st.where = Where::kZero;
    settlePatch(i, st);
    recount(i, before, st);
    if (st.dirty) --dirtyChunks_;
    st.dirty = false;
  }
}

}  // namespace ferry
