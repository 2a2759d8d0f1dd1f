// The journal: when the upload buffer fills, the changed pages of many dirty chunks go
// to the store in one segment instead of each chunk whole (docs/volume-engine.md
// "The journal"). A journaled chunk stays dirty until its whole upload, which voids
// its entries; the cache may evict it meanwhile, and it is then rebuilt from its
// object and its pieces in the segments when read, written or uploaded. A gateway
// adopting the volume applies the entries newer than each chunk's object
// (openJournal).

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>

#include "ferry/log.h"
#include "page_buffer.h"
#include "parallel.h"
#include "rebuild_plan.h"
#include "volume.h"

namespace ferry {
namespace {

constexpr size_t kMaxEntries = 1 << 16;
// Range GETs of segments one rebuild has in flight at once.
constexpr size_t kRebuildReadsAtOnce = 4;
// Reads of a segment by chunks rebuilt together at most this far apart are one GET
// (the bytes between cost the store less than another request), of at most kMaxRange.
constexpr uint64_t kRebuildMergeGap = 128 << 10;
constexpr uint64_t kRebuildMaxRange = 1 << 20;

// Opening the journal: segment headers read at once, and segments whose headers are
// held at once.
constexpr size_t kOpenReadsAtOnce = 16;
constexpr size_t kOpenBatch = 256;
// Adopting a volume: the chunks the journal is applied to together (by their bytes, at
// most kAdoptMaxBatch), and their PUTs at once.
constexpr uint64_t kAdoptBatchBytes = 32 << 20;
constexpr uint64_t kAdoptMaxBatch = 64;
constexpr size_t kAdoptPutsAtOnce = 4;

// The pages that hold bytes [from, to) of a chunk (a rebuild's wanted bytes).
std::pair<uint64_t, uint64_t> wantedPages(uint64_t from, uint64_t to) {
  return {from / kJournalPage, to == UINT64_MAX ? UINT64_MAX : pagesFor(to)};
}

}  // namespace

Result<uint64_t> Volume::journalSome(uint64_t maxBytes) {
  struct Pick {
    uint64_t index;
    std::vector<uint64_t> bits;  // the pages in this segment
    size_t firstEntry, entryCount;
  };
  std::vector<Pick> picks;
  std::vector<JournalEntry> entries;
  uint64_t bytes = 0, segment = 0;
  {
    std::lock_guard lock(mu_);
    if (fenced_) return Status::fenced("volume " + row_.name + " " + lastError_);
    if (Status s = leaseCheck(); !s) return s;
    for (auto& [index, bits] : pages_) {
      if (bytes >= maxBytes || entries.size() >= kMaxEntries) break;
      ChunkState& st = states_[index];
      // Only changes in the upload buffer, and not while the chunk moves.
      const bool patched = st.where == Where::kPatched;
      if ((st.where != Where::kCached && !patched) || !st.dirty || st.journaled || st.busy || st.uploading ||
          st.journaling) {
        continue;
      }
      const uint64_t len = chunkLength(index);
      const uint64_t pages = pageCount(index);
      uint64_t n = countBits(bits);
      // Cheaper as a whole upload, unless that would read the chunk from the store.
      if (n == 0 || (n * 4 > pages && !patched)) continue;
      size_t firstEntry = entries.size();
      for (auto [first, end] : pageRuns(bits, pages, true)) {
        uint64_t offset = first * kJournalPage;
        uint64_t length = std::min(end * kJournalPage, len) - offset;
        entries.push_back({index, static_cast<uint32_t>(offset), static_cast<uint32_t>(length), 0});
        bytes += length;
      }
      st.journaling = true;
      picks.push_back({index, bits, firstEntry, entries.size() - firstEntry});
      // Until the segment is stored, its pages are still changes of the chunk: in its
      // row (a start after a crash counts them; a patch keeps them in the cache file).
      journalingPages_[index] = bits;
      // Writes from now on mark their pages again.
      std::fill(bits.begin(), bits.end(), 0);
    }
    if (picks.empty()) return uint64_t{0};
    // The chunks in index order in the segment (FORMAT.md): neighbours stored whole
    // together then read their pieces of it with one range GET (mergeReads).
    std::sort(picks.begin(), picks.end(), [](const Pick& a, const Pick& b) { return a.index < b.index; });
    std::vector<JournalEntry> ordered;
    ordered.reserve(entries.size());
    for (Pick& p : picks) {
      const auto from = entries.begin() + static_cast<std::ptrdiff_t>(p.firstEntry);
      p.firstEntry = ordered.size();
      ordered.insert(ordered.end(), from, from + static_cast<std::ptrdiff_t>(p.entryCount));
    }
    entries = std::move(ordered);
    // Above every object of these chunks so far; an upload that copies one of them
    // from now on takes a generation above it and voids these entries.
    segment = nextGeneration();
  }

  std::string header = encodeJournalHeader(entries);
  std::vector<uint8_t> body(header.size() + bytes);
  std::copy(header.begin(), header.end(), body.begin());
  Status s;
  uint64_t at = header.size();
  for (JournalEntry& e : entries) {
    e.dataOffset = at;
    if (s = cache_.read(e.index * row_.chunkSize + e.offset, body.data() + at, e.length); !s) break;
    at += e.length;
  }
  if (s) {
    host_.bandwidth().upload(body.size());
    // Again after any wait for bandwidth (a refusal counts as a failed PUT).
    s = underLease([&] { return host_.store().put(journalKey(row_.name, segment), body); });
  }

  std::lock_guard lock(mu_);
  uint32_t live = 0;
  for (Pick& p : picks) {
    ChunkState& st = states_[p.index];
    st.journaling = false;
    journalingPages_.erase(p.index);
    // A patched chunk's row lists fewer pages now (before its slot is punched around them).
    if (st.where == Where::kPatched) markMeta(p.index, st);
    // Stored whole since the pick: these entries are void already.
    bool superseded = !(st.remoteGen & kSourceGen) && st.remoteGen > segment;
    if (superseded) continue;
    // A PUT that failed (a timeout) may still land: its segment holds the chunk like a
    // stored one (zeros get a tombstone) until the chunk goes up whole, which deletes it.
    journalRefs_[p.index].push_back(segment);
    ++live;
    if (!s) {
      // Still to be stored: mark the pages again.
      if (st.dirty) {
        auto& bits = pages_[p.index];
        if (bits.empty()) bits.assign(p.bits.size(), 0);
        for (size_t w = 0; w < bits.size(); ++w) bits[w] |= p.bits[w];
      }
      continue;
    }
    auto& pieces = journalPieces_[p.index];
    for (size_t e = p.firstEntry; e < p.firstEntry + p.entryCount; ++e) {
      pieces.push_back({segment, entries[e].dataOffset, entries[e].offset, entries[e].length});
    }
    auto it = pages_.find(p.index);
    bool pending = it != pages_.end() && countBits(it->second) != 0;
    if (!pending && st.where == Where::kCached && st.dirty) {
      setJournaled(p.index, st, true);
      if (it != pages_.end()) pages_.erase(it);  // the next write marks its pages afresh
    }
  }
  // Their charge in the upload buffer: what is still not in a stored segment; a patch's
  // cache: its pages not stored yet (none: kJournal again).
  for (Pick& p : picks) {
    recharge(p.index, states_[p.index]);
    settlePatch(p.index, states_[p.index]);
  }
  if (live > 0)
    segmentLive_[segment] = live;
  else
    supersededPending_.push_back(journalKey(row_.name, segment));
  cv_.notify_all();  // zeros waiting for these chunks (zeroWholeChunk)
  if (!s) {
    ++uploadErrors_;
    lastError_ = s.toString();
    return s.withContext("journal of " + row_.name);
  }
  ++journalWrites_;
  journalBytes_ += bytes;
  uploadedBytes_ += body.size();
  return bytes;
}

void Volume::releaseJournalRefs(uint64_t index) {
  journalPieces_.erase(index);
  auto it = journalRefs_.find(index);
  if (it == journalRefs_.end()) return;
  for (uint64_t segment : it->second) {
    auto live = segmentLive_.find(segment);
    if (live == segmentLive_.end() || --live->second > 0) continue;
    segmentLive_.erase(live);
    supersededPending_.push_back(journalKey(row_.name, segment));
  }
  journalRefs_.erase(it);
}

Volume::JournalCopy Volume::journalCopy(uint64_t index) {
  const ChunkState& st = states_[index];
  JournalCopy copy{st.remoteGen, st.remoteZero, st.where == Where::kPatched, {}, {}, {}, {}};
  if (copy.patched) {
    copy.pages = patchPages(index);
    copy.keep = keepPages(index);
  }
  if (auto it = journalPieces_.find(index); it != journalPieces_.end()) copy.pieces = it->second;
  if (copy.gen != 0 && !copy.zero && !(copy.gen & kSourceGen)) copy.keys.push_back(objectKey(index, copy.gen));
  for (size_t i = 0; i < copy.pieces.size(); ++i) {
    if (i == 0 || copy.pieces[i].segment != copy.pieces[i - 1].segment) {
      copy.keys.push_back(journalKey(row_.name, copy.pieces[i].segment));
    }
  }
  for (const std::string& k : copy.keys) reading_.insert(k);
  return copy;
}

void Volume::doneReading(const JournalCopy& copy) {
  for (const std::string& k : copy.keys) reading_.erase(reading_.find(k));
}

Status Volume::rebuild(uint64_t index, const JournalCopy& copy, std::span<uint8_t> buf, bool upload) {
  const RebuildTarget target{index, &copy, buf};
  return rebuild(std::span(&target, 1), upload);
}

Status Volume::rebuild(std::span<const RebuildTarget> targets, bool upload) {
  if (!journalOpen_.load()) return Status::unavailable("volume " + row_.name + ": its journal is not read yet");
  return assemble(targets, upload);
}

Status Volume::assemble(std::span<const RebuildTarget> targets, bool upload) {
  // An upload's GETs wait their turn behind clients' reads (store_priority.h).
  auto turn = [&] { return upload ? uploadTurn() : StorePriority::Upload(); };
  std::vector<RebuildPlan> plans;
  for (const RebuildTarget& t : targets) {
    if (t.copy->pieces.empty() && !t.copy->patched) {
      return Status::corruption("volume " + row_.name + " chunk " + std::to_string(t.index) +
                                " is in the journal, but no segment holds its changes");
    }
    auto [firstPage, endPage] = wantedPages(t.from, t.to);
    plans.push_back(planRebuild(t.copy->pieces, t.copy->pages, chunkLength(t.index), kJournalPage, firstPage, endPage));
  }
  // First the objects, under the pieces: the span of the pages no piece holds.
  std::vector<size_t> needObject;
  for (size_t i = 0; i < plans.size(); ++i) {
    if (plans[i].needsObject) needObject.push_back(i);
  }
  Status s = runParallel(needObject.size(), kRebuildReadsAtOnce, [&](size_t n) -> Status {
    const RebuildTarget& t = targets[needObject[n]];
    const RebuildPlan& plan = plans[needObject[n]];
    const JournalCopy& copy = *t.copy;
    if (copy.gen == 0 || copy.zero) {
      std::fill(t.buf.begin() + static_cast<std::ptrdiff_t>(plan.objectFrom),
                t.buf.begin() + static_cast<std::ptrdiff_t>(plan.objectTo), uint8_t{0});
      return Status::ok();
    }
    // A few wanted pages (a small read) take their span alone, as does a whole chunk's
    // rebuild when that span is under half of it.
    const bool part = t.to != UINT64_MAX || (plan.objectTo - plan.objectFrom) * 2 < chunkLength(t.index);
    StorePriority::Upload held = turn();
    return part ? fetchRange(t.index, copy.gen, plan.objectFrom, plan.objectTo, t.buf)
                : fetch(t.index, copy.gen, t.buf);
  });
  if (!s) return s;
  // Then the pieces, a few range GETs at once: a chunk rebuilt after random writes has
  // its pages in tens to hundreds of segments, and each GET is mostly the store's round
  // trip. Chunks rebuilt together share a GET where their pieces lie close.
  const std::vector<SegmentRange> ranges = mergeReads(plans, kRebuildMergeGap, kRebuildMaxRange);
  s = runParallel(ranges.size(), kRebuildReadsAtOnce, [&](size_t r) -> Status {
    const SegmentRange& range = ranges[r];
    std::vector<uint8_t> span(range.to - range.from);
    const std::string key = journalKey(row_.name, range.segment);
    StorePriority::Upload held = turn();
    host_.bandwidth().download(span.size());
    auto got = host_.store().get(key, range.from, span);
    if (!got) return got.status().withContext("read journal segment " + key);
    if (got.value() != span.size()) return Status::corruption(key + " is shorter than its header says");
    downloadedBytes_ += got.value();
    ++journalReads_;
    for (const SegmentRange::Part& part : range.parts) {
      uint8_t* to = targets[part.plan].buf.data();
      for (const RebuildPlan::Copy& c : plans[part.plan].reads[part.read].copies) {
        std::memcpy(to + c.offset, span.data() + (c.dataOffset - range.from), c.length);
      }
    }
    return Status::ok();
  });
  if (!s) return s;
  // A patch's pages, newer than every piece, from the cache file.
  for (const RebuildTarget& t : targets) {
    const uint64_t len = chunkLength(t.index);
    auto [firstPage, endPage] = wantedPages(t.from, t.to);
    for (auto [first, end] : pageRuns(t.copy->pages, pageCount(t.index), true)) {
      first = std::max(first, firstPage);
      end = std::min(end, endPage);
      if (first >= end) continue;
      const uint64_t from = first * kJournalPage;
      const uint64_t to = std::min(end * kJournalPage, len);
      if (s = cache_.read(t.index * row_.chunkSize + from, t.buf.data() + from, to - from); !s) return s;
    }
  }
  return Status::ok();
}

Status Volume::openJournal(bool adopt) {
  ObjectStore& store = host_.store();
  const std::string prefix = journalPrefix(row_.name);
  auto listed = store.list(prefix);
  if (!listed) return listed.status().withContext("list the journal of volume " + row_.name);
  // REQUIRES: mu_ held. Every chunk in the journal has the pieces that rebuild it.
  auto checkPieces = [this]() -> Status {
    auto missing = [this](uint64_t i) {
      return Status::corruption("volume " + row_.name + " chunk " + std::to_string(i) +
                                " is in the journal, but no segment in the store holds its changes");
    };
    for (uint64_t i = 0; i < states_.size(); ++i) {
      if (states_[i].where == Where::kJournal && journalPieces_.count(i) == 0) return missing(i);
    }
    for (uint64_t i : patchedWithPieces_) {
      if (states_[i].where == Where::kPatched && journalPieces_.count(i) == 0) return missing(i);
    }
    return Status::ok();
  };
  // REQUIRES: mu_ held. Patched chunks with no page left (a row committed while one was
  // read) are in the journal only, now that their pieces are known.
  auto settleLoaded = [this] {
    for (uint64_t i = 0; i < states_.size(); ++i) {
      if (states_[i].where == Where::kPatched) settlePatch(i, states_[i]);
    }
  };
  if (listed.value().empty()) {
    std::lock_guard lock(mu_);
    if (Status s = checkPieces(); !s) return s;
    settleLoaded();
    journalOpen_ = true;
    return Status::ok();
  }

  // Every segment's entries, in generation order; per chunk, the entries that apply
  // (newer than its object).
  struct Apply {
    uint64_t segment;
    JournalEntry entry;
  };
  std::map<uint64_t, std::string> segments;  // generation -> key
  std::map<uint64_t, uint64_t> sizes;        // generation -> bytes
  std::map<uint64_t, std::vector<Apply>> replay;
  std::map<uint64_t, uint32_t> live;
  for (const ObjectInfo& o : listed.value()) {
    auto gen = parseJournalKey(std::string_view(o.key).substr(prefix.size()));
    if (!gen) {
      logError("volume " + row_.name + ": ignoring unexpected object " + o.key);
      continue;
    }
    segments[*gen] = o.key;
    sizes[*gen] = o.size;
  }
  // REQUIRES: mu_ not held. Takes in one segment's entries.
  auto takeIn = [&](uint64_t segment, const std::string& key, const std::vector<JournalEntry>& entries) -> Status {
    std::lock_guard lock(mu_);
    for (const JournalEntry& e : entries) {
      if (e.index >= states_.size() || e.offset + uint64_t{e.length} > chunkLength(e.index)) {
        return Status::corruption(key + ": an entry for chunk " + std::to_string(e.index) + " past the end of volume " +
                                  row_.name);
      }
      // On pages, as FORMAT.md says (a rebuild takes each page from one piece).
      if (e.offset % kJournalPage != 0 ||
          (e.length % kJournalPage != 0 && e.offset + uint64_t{e.length} != chunkLength(e.index))) {
        return Status::corruption(key + ": an entry for chunk " + std::to_string(e.index) + " at " +
                                  std::to_string(e.offset) + "+" + std::to_string(e.length) + " is not on 4 KiB pages");
      }
      ChunkState& st = states_[e.index];
      bool applies = (st.remoteGen & kSourceGen) || st.remoteGen < segment;
      if (!applies) continue;
      if (st.dirty) {
        // This gateway has the chunk's newest content: the segment stays until the
        // chunk goes up whole (and rebuilds it while it is not cached). One of a later
        // epoch is another gateway's (a stale copy read after a takeover): not ours.
        if ((segment >> 32) > epoch_) continue;
        journalPieces_[e.index].push_back({segment, e.dataOffset, e.offset, e.length});
        auto& refs = journalRefs_[e.index];
        if (std::find(refs.begin(), refs.end(), segment) == refs.end()) {
          refs.push_back(segment);
          ++live[segment];
        }
      } else if (adopt) {
        replay[e.index].push_back({segment, e});
      }
    }
    return Status::ok();
  };
  // The headers, a batch at a time with a few GETs at once (thousands of segments after
  // random writes), then each batch's entries in generation order.
  const std::vector<std::pair<uint64_t, std::string>> order(segments.begin(), segments.end());
  for (size_t first = 0; first < order.size(); first += kOpenBatch) {
    const size_t count = std::min(kOpenBatch, order.size() - first);
    std::vector<std::vector<JournalEntry>> headers(count);
    Status read = runParallel(count, kOpenReadsAtOnce, [&](size_t n) -> Status {
      const auto& [segment, key] = order[first + n];
      auto entries = readJournalHeader(store, key, sizes.at(segment), row_.chunkSize);
      if (!entries) return entries.status();
      headers[n] = std::move(entries.value());
      return Status::ok();
    });
    if (!read) return read;
    for (size_t n = 0; n < count; ++n) {
      if (Status s = takeIn(order[first + n].first, order[first + n].second, headers[n]); !s) return s;
    }
  }

  // The adopted chunks: the object, then the entries that apply, stored whole. A group
  // of them at a time, rebuilt together as an upload's neighbours are (a segment's
  // entries of all of them read with one range GET where they lie close), then stored
  // a few PUTs at once.
  std::vector<std::map<uint64_t, std::vector<Apply>>::const_iterator> todo;
  for (auto it = replay.cbegin(); it != replay.cend(); ++it) todo.push_back(it);
  const size_t group = std::clamp<uint64_t>(kAdoptBatchBytes / row_.chunkSize, 1, kAdoptMaxBatch);
  PageBuffer room;
  if (Status s = catchAll([&] {
        room = PageBuffer(std::min(group, todo.size()) * row_.chunkSize);
        return Status::ok();
      });
      !s) {
    return s.withContext("apply the journal of " + row_.name);
  }
  for (size_t first = 0; first < todo.size(); first += group) {
    const size_t count = std::min(group, todo.size() - first);
    std::vector<JournalCopy> copies(count);
    std::vector<RebuildTarget> targets;
    std::vector<char> cached(count, 0);
    {
      std::lock_guard lock(mu_);
      for (size_t n = 0; n < count; ++n) {
        const auto& [index, applies] = *todo[first + n];
        copies[n].gen = states_[index].remoteGen;
        copies[n].zero = states_[index].remoteZero;
        cached[n] = states_[index].where == Where::kCached;
        for (const Apply& a : applies) {
          copies[n].pieces.push_back({a.segment, a.entry.dataOffset, a.entry.offset, a.entry.length});
        }
        targets.push_back({index, &copies[n], std::span(room.data() + n * row_.chunkSize, chunkLength(index))});
      }
    }
    if (Status s = assemble(targets); !s) return s.withContext("apply the journal of " + row_.name);
    std::vector<uint64_t> newGens(count, 0);
    std::vector<char> zeros(count, 0);
    Status stored = runParallel(count, kAdoptPutsAtOnce, [&](size_t n) -> Status {
      const RebuildTarget& t = targets[n];
      zeros[n] = allZero(t.buf);
      const uint64_t gen = nextGeneration();
      std::span<const uint8_t> object = zeros[n] ? std::span<const uint8_t>() : std::span<const uint8_t>(t.buf);
      if (Status s = store.put(chunkKey(row_.name, t.index, gen), object); !s) {
        return s.withContext("store chunk " + std::to_string(t.index) + " of " + row_.name + " from its journal");
      }
      if (cached[n]) {
        if (written_) written_->mark(t.index);  // its row, committed below, says the old generation
        if (Status s = cache_.write(t.index * row_.chunkSize, t.buf.data(), t.buf.size()); !s) return s;
      }
      newGens[n] = gen;
      return Status::ok();
    });
    std::lock_guard lock(mu_);
    for (size_t n = 0; n < count; ++n) {
      if (newGens[n] == 0) continue;  // not stored (a failure, or not tried after one): the next start applies it again
      const uint64_t index = targets[n].index;
      ChunkState& st = states_[index];
      if (st.remoteGen & kSourceGen) {
        --hydrationLeft_;
      } else if (st.remoteGen != 0) {
        supersededPending_.push_back(chunkKey(row_.name, index, st.remoteGen));
      }
      st.remoteGen = newGens[n];
      st.remoteZero = zeros[n];
      st.crc.reset();  // (not computed on this rare path: a crash then distrusts its cache)
      if (st.where != Where::kCached) st.where = zeros[n] ? Where::kZero : Where::kRemote;
      markMeta(index, st);
    }
    if (!stored) return stored;
  }
  {
    std::lock_guard lock(mu_);
    if (Status s = checkPieces(); !s) return s;
    settleLoaded();
    journalOpen_ = true;
    for (const auto& [segment, key] : segments) {
      auto it = live.find(segment);
      if (it == live.end())
        supersededPending_.push_back(key);
      else
        segmentLive_[segment] = it->second;
    }
  }
  if (!replay.empty()) {
    logInfo("volume " + row_.name + ": applied the journal to " + std::to_string(replay.size()) + " chunks from " +
            std::to_string(segments.size()) + " segments");
  }
  // The rows point at the new objects before the segments and old objects go.
  if (Status s = persist(); !s) return s;
  deleteSuperseded();
  return Status::ok();
}

}  // namespace ferry
