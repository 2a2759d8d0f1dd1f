// The copy-on-write freeze of a snapshot (Volume::beginFreeze in volume.h;
// docs/volume-engine.md "Snapshots" says why each step is safe).

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>
#include <unordered_map>

#include "volume.h"

namespace ferry {

namespace {

// Write sequence numbers wrap: a is at or after b.
bool seqAtOrAfter(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) >= 0;
}

}  // namespace

struct Volume::Freeze {
  enum class State : uint8_t { kPending, kCopying, kCopied, kUploading, kDone };
  struct Chunk {
    uint64_t reservedGen = 0;  // taken at the freeze: below every later upload
    uint32_t seq = 0;          // the chunk's writeSeq at the freeze
    State state = State::kPending;
  };
  explicit Freeze(CacheFile f) : cow(std::move(f)) {}

  CacheFile cow;                               // copies of rewritten frozen chunks
  std::unordered_map<uint64_t, Chunk> chunks;  // the frozen ones; no insertions after the freeze
  std::vector<uint64_t> toUpload;              // copied, waiting for completeFreeze
  std::deque<uint64_t> pending;                // frozen, not known to be copied or stored
  std::vector<ChunkKey> keys;                  // the snapshot's chunks so far, each pinned
  uint64_t open = 0;                           // frozen chunks not kDone
  Status error;                                // a copy that failed: the snapshot fails
  FreezeStats stats;
};

Result<Volume::FreezeStats> Volume::beginFreeze(const std::string& cowPath) {
  auto cow = CacheFile::open(cowPath, row_.size, false);
  if (!cow) return cow.status().withContext("copy-on-write file for a snapshot of " + row_.name);
  auto f = std::make_shared<Freeze>(std::move(cow).value());
  std::lock_guard lock(mu_);
  if (freeze_) return Status::unavailable("volume " + row_.name + ": a snapshot is being taken");
  if (hydrationLeft_ > 0) {
    return Status::busy("volume " + row_.name + " is still being made from snapshot " + row_.sourceSnapshot + " of " +
                        row_.sourceVolume + " (" + std::to_string(hydrationLeft_.load()) +
                        " chunks to go); snapshot it once that is done");
  }
  auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < states_.size(); ++i) {
    ChunkState& st = states_[i];
    if (st.dirty && (st.where == Where::kCached || st.where == Where::kJournal || st.where == Where::kPatched)) {
      f->chunks.emplace(i, Freeze::Chunk{nextGeneration(), st.writeSeq, Freeze::State::kPending});
      f->pending.push_back(i);
      st.frozen = true;
    } else if (!st.dirty && st.remoteGen != 0 && !st.remoteZero) {
      f->keys.push_back({i, st.remoteGen});
      pins_.add(i, st.remoteGen);
    }
    // Otherwise zeros: never written, trimmed, or dirty and neither cached nor in the
    // journal (a zeroed chunk whose tombstone is not stored yet). A chunk being filled
    // (busy) is clean or zero, so its stored generation is its content.
  }
  f->open = f->chunks.size();
  f->stats.frozen = f->chunks.size();
  f->stats.pauseMicros = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
  freeze_ = f;
  return f->stats;
}

bool Volume::preserveFrozen(uint64_t index, std::unique_lock<std::mutex>& lock) {
  ChunkState& st = states_[index];
  if (!st.frozen) return false;
  st.frozen = false;
  std::shared_ptr<Freeze> f = freeze_;
  auto it = f ? f->chunks.find(index) : decltype(f->chunks.begin()){};
  if (!f || it == f->chunks.end() || it->second.state != Freeze::State::kPending) return false;
  it->second.state = Freeze::State::kCopying;
  st.busy = true;  // nobody writes (or uploads) it while it is copied
  bool inJournal = st.where == Where::kJournal || st.where == Where::kPatched;
  JournalCopy copy;
  if (inJournal) copy = journalCopy(index);
  lock.unlock();
  uint64_t base = index * row_.chunkSize;
  uint64_t len = chunkLength(index);
  std::span<uint8_t> buf = threadChunkBuffer(index);
  Status s = inJournal ? rebuild(index, copy, buf) : cache_.read(base, buf.data(), len);
  if (s) s = f->cow.write(base, buf.data(), len);
  lock.lock();
  if (inJournal) doneReading(copy);
  st.busy = false;
  if (s) {
    it->second.state = Freeze::State::kCopied;
    f->toUpload.push_back(index);
    uint64_t& late = lateCopies_[index];
    late = std::max(late, it->second.reservedGen);
  } else if (f->error) {  // the first failure is the one to tell
    // The write goes on regardless; only the snapshot fails.
    f->error = s.withContext("copy chunk " + std::to_string(index) + " of " + row_.name + " for a snapshot");
  }
  cv_.notify_all();
  return true;
}

void Volume::frozenUploaded(uint64_t index, uint32_t seq, uint64_t gen) {
  ChunkState& st = states_[index];
  if (!st.frozen || !freeze_) return;
  auto it = freeze_->chunks.find(index);
  if (it == freeze_->chunks.end() || it->second.state != Freeze::State::kPending) return;
  // An upload that copied the chunk before the freeze may lack a write acknowledged
  // between its copy and the freeze; one that copied at or after the freeze's write
  // sequence holds every acknowledged write (only writes still in flight at the
  // freeze can be in it too, which a snapshot may hold or not).
  if (!seqAtOrAfter(seq, it->second.seq)) return;
  st.frozen = false;
  it->second.state = Freeze::State::kDone;
  --freeze_->open;
  if (gen != 0) {
    freeze_->keys.push_back({index, gen});
    pins_.add(index, gen);
  }
  cv_.notify_all();
}

Status Volume::completeFreeze(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  std::shared_ptr<Freeze> f = freeze_;
  if (!f) return Status::invalid("volume " + row_.name + ": no snapshot is being taken");
  std::vector<uint8_t> buf;
  for (;;) {
    if (!f->error) return f->error;
    if (fenced_) return Status::fenced("volume " + row_.name + " " + lastError_);
    if (f->open == 0) return Status::ok();
    if (!f->toUpload.empty()) {
      uint64_t index = f->toUpload.back();
      f->toUpload.pop_back();
      Freeze::Chunk& c = f->chunks.at(index);
      c.state = Freeze::State::kUploading;
      uint64_t len = chunkLength(index);
      lock.unlock();
      buf.resize(len);
      Status s = f->cow.read(index * row_.chunkSize, buf.data(), len);
      bool zero = s && allZero(buf);
      if (s && !zero) {
        host_.bandwidth().upload(len);
        // After any wait for bandwidth.
        s = underLease([&] { return host_.store().put(chunkKey(row_.name, index, c.reservedGen), buf); });
      }
      lock.lock();
      if (!s) {
        // Back in the list: the snapshot fails, and abortFreeze deletes what went up.
        f->toUpload.push_back(index);
        c.state = Freeze::State::kCopied;
        return s.withContext("upload chunk " + std::to_string(index) + " of " + row_.name + " for a snapshot");
      }
      c.state = Freeze::State::kDone;
      --f->open;
      ++f->stats.copied;
      if (!zero) {
        f->keys.push_back({index, c.reservedGen});
        pins_.add(index, c.reservedGen);
        uploadedBytes_ += len;
      }
      cv_.notify_all();
      continue;
    }
    if (host_.stopping()) return Status::unavailable("gateway is shutting down");
    // A frozen chunk still as it was at the freeze: stored now, as an upload of the
    // volume would store it (its queue entry stays and later finds it clean; an upload
    // of it by the uploader meanwhile serves the snapshot as well). None is started
    // past the deadline.
    std::optional<uint64_t> index;
    if (std::chrono::steady_clock::now() < deadline) index = nextPendingFrozen(*f);
    if (index) {
      lock.unlock();
      Status s = uploadChunk(*index, buf, UploadTurn{.fromQueue = false, .forSnapshot = true});
      lock.lock();
      if (!s) return s.withContext("for a snapshot");  // uploadChunk queued it again
      continue;
    }
    // The rest are being copied or uploaded by others.
    auto until = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
    cv_.wait_until(lock, until);
    if (std::chrono::steady_clock::now() >= deadline && f->open != 0 && f->toUpload.empty()) {
      return Status::unavailable("volume " + row_.name + ": " + std::to_string(f->open) +
                                 " chunks of the snapshot still not stored" +
                                 (lastError_.empty() ? "" : " (last error: " + lastError_ + ")"));
    }
  }
}

std::optional<uint64_t> Volume::nextPendingFrozen(Freeze& f) {
  for (size_t n = f.pending.size(); n > 0; --n) {
    const uint64_t index = f.pending.front();
    f.pending.pop_front();
    if (f.chunks.at(index).state != Freeze::State::kPending) continue;  // copied or stored
    f.pending.push_back(index);  // until it is: an upload may fail, or be another's
    const ChunkState& st = states_[index];
    if (!st.uploading && !st.busy) return index;
  }
  return std::nullopt;
}

std::vector<ChunkKey> Volume::endFreeze(FreezeStats* stats) {
  std::lock_guard lock(mu_);
  std::vector<ChunkKey> keys;
  if (!freeze_) return keys;
  for (const auto& [index, c] : freeze_->chunks) states_[index].frozen = false;
  keys.swap(freeze_->keys);
  if (stats) *stats = freeze_->stats;
  freeze_.reset();
  std::sort(keys.begin(), keys.end(), [](const ChunkKey& a, const ChunkKey& b) { return a.index < b.index; });
  return keys;
}

std::vector<std::string> Volume::abortFreeze() {
  std::vector<ChunkKey> keys = endFreeze(nullptr);
  // The generations the freeze uploaded are no one's newest: unpin hands them back.
  return unpin(keys);
}

}  // namespace ferry
