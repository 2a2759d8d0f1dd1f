// Hydration of a volume made from a snapshot: each chunk still read from the source
// volume's object is copied into an object of its own (Volume::hydrateOne).

#include <optional>

#include "volume.h"

namespace ferry {

Volume::HydrateStep Volume::hydrateOne(Status* error, std::optional<uint64_t>* storeWhole) {
  if (hydrationLeft_.load() == 0) return HydrateStep::kDone;
  // Its turn at the store first, behind clients' reads, with no chunk held meanwhile
  // (one chosen stays out of uploads, the journal and eviction until copied).
  std::optional<StorePriority::Upload> turn;
  turn.emplace(uploadTurn(/*forSnapshot=*/true));
  std::unique_lock lock(mu_);
  if (hydrationLeft_ == 0) return HydrateStep::kDone;
  if (fenced_) return HydrateStep::kWait;
  const size_t n = states_.size();
  uint64_t index = n, held = n;
  // From where the last one was taken: each pass over the volume costs O(chunks).
  for (size_t step = 0; step < n; ++step) {
    uint64_t i = (hydrateCursor_ + step) % n;
    const ChunkState& st = states_[i];
    if (!(st.remoteGen & kSourceGen) || st.uploading || st.busy) continue;
    // A chunk with changes in the journal is stored whole by its upload instead: a
    // copy of the source would void those changes.
    if (!journalHolds(i, st)) {
      index = i;
      break;
    }
    if (held == n && st.dirty && !st.journaling) held = i;
  }
  if (index == n) {  // the rest are being uploaded or filled, or wait for their upload
    if (storeWhole && held != n) *storeWhole = held;
    return HydrateStep::kWait;
  }
  hydrateCursor_ = index + 1;
  ChunkState& st = states_[index];
  const uint64_t sourceGen = st.remoteGen;
  // As an upload: no other upload of the chunk starts, and a collection keeps every
  // object of the chunk, until the copy is recorded.
  st.uploading = true;
  const uint64_t newGen = nextGeneration();
  lock.unlock();

  const uint64_t len = chunkLength(index);
  // A copy inside the store when it can (S3 CopyObject, a hard link): the bytes then
  // never cross the gateway's link and the bandwidth limits do not apply.
  bool serverSide = false;
  Status s = fenced_ ? Status::fenced("volume " + row_.name + " was deleted or fenced") : underLease([&] {
    return host_.store().copyFrom(storeOf(sourceGen), objectKey(index, sourceGen), chunkKey(row_.name, index, newGen),
                                  &serverSide);
  });
  turn.reset();
  if (s && !serverSide) {
    host_.bandwidth().download(len);
    host_.bandwidth().upload(len);
  }

  lock.lock();
  st.uploading = false;
  if (s) {
    // Nothing changed remoteGen meanwhile: uploads of the chunk waited for us.
    st.remoteGen = newGen;
    st.remoteZero = false;  // (its crc, if known, holds: the copy has the same content)
    markMeta(index, st);
    --hydrationLeft_;
    hydratedBytes_ += len;
  } else {
    lastError_ = s.toString();
    if (error) *error = s.withContext("hydrate " + row_.name + " chunk " + std::to_string(index));
  }
  // An upload skipped while we held the chunk: queue it again.
  bool enqueue = st.dirty && !st.queued && !fenced_;
  if (enqueue) st.queued = true;
  cv_.notify_all();
  lock.unlock();
  if (enqueue) host_.enqueueUpload(shared_from_this(), index);
  return s ? HydrateStep::kCopied : HydrateStep::kWait;
}

}  // namespace ferry
