// Volumes made from a snapshot (docs/volume-engine.md "Volumes from snapshots"):
// creation with a hold on the snapshot, the hydration threads, and the release of the
// snapshot once every chunk is the volume's own.

#include <ctime>
#include <mutex>
#include <optional>
#include <thread>

#include "engine.h"
#include "ferry/log.h"
#include "ferry/strings.h"

namespace ferry {

namespace {

// A geometry for the new volume from the snapshot's: the same chunk size; a size at
// least the snapshot's (larger only if the snapshot ends on a chunk boundary, so that
// no source object is shorter than the chunk that reads it).
Status fitGeometry(CreateSpec& spec, const SnapshotManifest& m) {
  if (spec.chunkSize == 0) spec.chunkSize = m.chunkSize;
  if (spec.size == 0) spec.size = m.size;
  if (spec.chunkSize != m.chunkSize) {
    return Status::invalid("a volume made from snapshot " + m.id + " has its chunk size, " +
                           std::to_string(m.chunkSize) + " (asked for " + std::to_string(spec.chunkSize) + ")");
  }
  if (spec.size < m.size) {
    return Status::invalid("volume " + spec.name + ": size " + std::to_string(spec.size) +
                           " is smaller than snapshot " + m.id + " (" + std::to_string(m.size) + ")");
  }
  if (spec.size > m.size && m.size % m.chunkSize != 0) {
    return Status::invalid("snapshot " + m.id + " (" + std::to_string(m.size) +
                           " bytes) does not end on a chunk boundary: a volume made from it has its size");
  }
  return Status::ok();
}

}  // namespace

Result<std::shared_ptr<Volume>> Engine::createFromSnapshot(const CreateSpec& in) {
  CreateSpec spec = in;
  const std::string& src = spec.sourceVolume;
  std::string& snap = spec.sourceSnapshot;
  const bool latest = snap == kLatestRecoveryPoint;
  if (Status s = checkVolumeName(src); !s) return s.withContext("source volume");
  if (Status s = checkVolumeName(snap); !s) return Status::invalid("snapshot id: " + s.message());
  auto sourceStore = storeFor(spec.sourceStore);
  if (!sourceStore) return sourceStore.status().withContext("the store of snapshot " + snap);
  ObjectStore& from = *sourceStore.value();
  // The same name in another store (a lost gateway's volume recovered under its name)
  // is another volume; in this one it is the volume itself.
  if (src == spec.name && &from == store_.get()) {
    return Status::invalid("volume " + spec.name + " cannot be made from its own snapshot");
  }
  auto existing = store_->getAll(headerKey(spec.name));
  if (existing) {
    // The same create, interrupted by a crash after the header went up: take the
    // volume over from the store as it is (its source.json says where from).
    auto header = decodeHeader(existing.value());
    auto was = store_->getAll(sourceKey(spec.name));
    auto m = was ? decodeManifest(was.value()) : Result<SnapshotManifest>(was.status());
    if (header && m && m.value().volume == src && (latest || m.value().id == snap)) {
      logInfo("volume " + spec.name + ": its creation from snapshot " + m.value().id + " was interrupted; resuming");
      return createLocked(CreateSpec{spec.name, header.value().size, header.value().chunkSize});
    }
    return Status::busy("the store already holds a volume named " + spec.name + "; choose another name");
  }
  if (existing.status().code() != Code::kNotFound) return existing.status().withContext("create volume " + spec.name);
  uint64_t minEpoch = 0;
  if (Status s = deleteLeftovers(spec.name, &minEpoch); !s) return s.withContext("create volume " + spec.name);

  // The hold first, then the manifest: a delete of the snapshot that races with us
  // either removed the manifest before we read it (we fail) or finds our hold (and
  // puts the manifest back).
  std::string hold;
  std::vector<std::string> written;
  auto undo = [&](Status s) {
    for (const std::string& k : written) (void)store_->remove(k);
    if (!hold.empty()) (void)from.remove(hold);
    return s;
  };
  Result<std::string> body = Status::notFound("");
  for (int attempt = 0;; ++attempt) {
    if (latest) {
      // The newest recovery point; a newer one may replace it meanwhile: look again.
      auto points = listRecoveryPoints(src, &from);
      if (!points) return points.status();
      if (points.value().empty()) return Status::notFound("volume " + src + " has no recovery point in the store");
      snap = points.value().back();
    }
    hold = holdKey(src, snap, spec.name);
    std::string holdBody = "{\"format\": 1, \"holder\": \"" + spec.name + "\", \"created\": " +
                           std::to_string(static_cast<int64_t>(::time(nullptr))) + "}";
    if (Status s = from.put(hold, bytesOf(holdBody)); !s) return s.withContext("hold snapshot " + snap);
    body = from.getAll(snapshotKey(src, snap));
    if (body || body.status().code() != Code::kNotFound) break;
    (void)undo(Status::ok());
    if (!latest || attempt == 2) {
      return Status::notFound("no snapshot " + snap + " of volume " + src + " in the store");
    }
  }
  if (!body) return undo(body.status().withContext("snapshot " + snap + " of " + src));
  auto m = decodeManifest(body.value());
  if (!m) return undo(m.status().withContext(snapshotKey(src, snap)));
  if (Status s = fitGeometry(spec, m.value()); !s) return undo(s);
  if (Status s = checkGeometry(spec.size, spec.chunkSize); !s) return undo(s.withContext("volume " + spec.name));
  if (spec.chunkSize * 4 > options_.cacheSize) {
    return undo(Status::invalid("volume " + spec.name + ": chunk size " + std::to_string(spec.chunkSize) +
                                " needs a cache-size of at least four chunks"));
  }
  // The source manifest beside the volume (a gateway adopting the volume from the
  // store reads it), then the header.
  SnapshotManifest source = m.value();
  source.sourceStore = spec.sourceStore;
  if (Status s = store_->put(sourceKey(spec.name), bytesOf(encodeManifest(source))); !s) return undo(s);
  written.push_back(sourceKey(spec.name));
  VolumeHeader h{kFormatVersion, spec.name, spec.size, spec.chunkSize, static_cast<int64_t>(::time(nullptr))};
  std::string header = encodeHeader(h);
  if (Status s = store_->put(headerKey(spec.name), bytesOf(header)); !s) return undo(s);
  written.push_back(headerKey(spec.name));

  std::vector<ChunkRow> rows;
  rows.reserve(m.value().chunks.size());
  for (const ChunkKey& k : m.value().chunks) rows.push_back({k.index, k.generation | Volume::kSourceGen, 0});
  // The volume and its rows in one transaction (a volume row alone would read as zeros
  // and look hydrated).
  auto row = meta_->addVolume(spec.name, spec.size, spec.chunkSize, h.createdUnix, src, snap, spec.sourceStore, rows);
  if (!row) return undo(row.status());
  row->epoch = minEpoch;
  auto held = openVolume(row.value(), rows, true);
  if (!held) {
    meta_->removeVolume(row->id);
    return undo(held.status());
  }
  auto v = held->volume;
  v->setSourceCreated(m.value().createdUnix);
  {
    std::lock_guard lock(mu_);
    volumes_.emplace(spec.name, std::move(held).value());
  }
  logInfo("volume " + spec.name + ": made from snapshot " + snap + " of " + src + ", " +
          std::to_string(rows.size()) + " chunks to hydrate");
  {
    std::lock_guard lock(bgMu_);
    ++hydrateAdded_;
  }
  bgCv_.notify_all();
  return v;
}

Status Engine::addSourceRows(const std::string& name, std::vector<ChunkRow>& rows, VolumeRow* source) {
  auto body = store_->getAll(sourceKey(name));
  if (!body && body.status().code() == Code::kNotFound) return Status::ok();  // its own, all of it
  if (!body) return body.status().withContext("volume " + name + " source");
  auto m = decodeManifest(body.value());
  if (!m) return m.status().withContext(sourceKey(name));
  std::vector<bool> own;
  for (const ChunkRow& r : rows) {
    if (r.index >= own.size()) own.resize(r.index + 1);
    own[r.index] = true;
  }
  for (const ChunkKey& k : m.value().chunks) {
    if (k.index < own.size() && own[k.index]) continue;
    rows.push_back({k.index, k.generation | Volume::kSourceGen, 0});
  }
  std::sort(rows.begin(), rows.end(), [](const ChunkRow& a, const ChunkRow& b) { return a.index < b.index; });
  source->sourceVolume = m.value().volume;
  source->sourceSnapshot = m.value().id;
  source->sourceStore = m.value().sourceStore;
  return Status::ok();
}

void Engine::hydrateLoop() {
  uint64_t errors = 0;
  while (!stopping_) {
    uint64_t seen;  // before looking: a volume made meanwhile ends the wait below
    {
      std::lock_guard lock(bgMu_);
      seen = hydrateAdded_;
    }
    bool copied = false, hydrating = false;
    for (auto& v : volumes()) {
      if (stopping_) break;
      if (!v->hydrating()) continue;
      hydrating = true;
      Status error;
      switch (v->hydrateOne(&error)) {
        case Volume::HydrateStep::kCopied:
          copied = true;
          break;
        case Volume::HydrateStep::kDone:
          finishHydration(*v);
          break;
        case Volume::HydrateStep::kWait:
          if (!error && errors++ % 20 == 0) logError(error.toString() + " (will retry)");
          break;
      }
    }
    if (!copied) {
      // A copy that must wait (the store down, chunks taken by others): again soon.
      // Nothing to copy: until a volume made from a snapshot wakes the threads
      // (bgCv_), or 5 s (one adopted while still being made from its snapshot).
      std::unique_lock lock(bgMu_);
      bgCv_.wait_for(lock, std::chrono::milliseconds(hydrating ? 200 : 5000),
                     [&] { return bgStop_ || hydrateAdded_ != seen; });
    }
  }
}

Status Engine::hydrateRest(Volume& v, std::chrono::steady_clock::time_point deadline) {
  // The hydration threads' copies waiting behind clients' reads go now, as do ours.
  Volume::SnapshotHurry hurry(v);
  const uint64_t left = v.hydrationLeft();
  std::mutex mu;
  Status failed;  // the first failure stops every worker; GUARDED_BY(mu)
  auto fail = [&](Status s) {
    std::lock_guard lock(mu);
    if (failed) failed = std::move(s);
  };
  auto stop = [&] {
    std::lock_guard lock(mu);
    return !failed;
  };
  auto work = [&] {
    std::vector<uint8_t> buf;
    while (!stop()) {
      if (stopping_) return fail(Status::unavailable("the engine is stopping"));
      if (v.fenced()) return fail(Status::fenced("volume " + v.name() + " was deleted or fenced"));
      if (std::chrono::steady_clock::now() >= deadline) {
        return fail(Status::unavailable(std::to_string(v.hydrationLeft()) + " chunks of volume " + v.name() +
                                        " still to copy from snapshot " + v.sourceSnapshot() + " of " +
                                        v.sourceVolume() + " when the time ran out"));
      }
      Status error;
      std::optional<uint64_t> storeWhole;
      switch (v.hydrateOne(&error, &storeWhole)) {
        case Volume::HydrateStep::kDone:
          return;
        case Volume::HydrateStep::kCopied:
          break;
        case Volume::HydrateStep::kWait:
          if (!error) return fail(error);
          // A chunk left with changes in the journal goes up whole, which the uploader
          // leaves to upload-max-age: stored here now instead (with the queued journaled
          // chunks of its group), before clients' reads as the copies go. Only this
          // volume hurries.
          if (storeWhole) {
            const uint64_t before = v.hydrationLeft();
            Status s = v.uploadChunk(*storeWhole, buf, UploadTurn{.fromQueue = false, .forSnapshot = true});
            // As a failed copy: the snapshot fails (the uploader tries again later).
            if (!s) return fail(s);
            if (v.hydrationLeft() < before) break;
          }
          // Or the chunks left are being copied or uploaded by someone else: look
          // again soon.
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          break;
      }
    }
  };
  std::vector<std::thread> helpers;
  for (size_t i = 1; i < kSnapshotUploaders; ++i) helpers.emplace_back(work);
  work();
  for (std::thread& t : helpers) t.join();
  if (!failed) return failed.withContext("copy the rest of the volume from its source first");
  finishHydration(v);  // best effort: the hydration threads retry a failed release
  logInfo("volume " + v.name() + ": copied the last " + std::to_string(left) + " chunks from snapshot " +
          v.sourceSnapshot() + " of " + v.sourceVolume() + " for a snapshot");
  return Status::ok();
}

void Engine::finishHydration(Volume& v) {
  std::lock_guard guard(hydrateMu_);
  if (!v.hydrating()) return;
  // The rows that point at the volume's own objects first; then the hold (the
  // snapshot may go), the source manifest, and last the local record: a crash in
  // between repeats the steps that are left.
  if (Status s = v.persist(); !s) return;
  auto from = storeFor(v.sourceStoreUrl());
  Status s = from.status();
  // Under the volume's lease: a gateway that took it over while it was being made
  // reads source.json to go on.
  if (s) s = v.underLease([&] { return from.value()->remove(holdKey(v.sourceVolume(), v.sourceSnapshot(), v.name())); });
  if (s || s.code() == Code::kNotFound) s = v.underLease([&] { return store_->remove(sourceKey(v.name())); });
  if (s || s.code() == Code::kNotFound) s = meta_->clearSource(v.id());
  if (!s && s.code() != Code::kNotFound) {
    v.noteError("release snapshot " + v.sourceSnapshot() + ": " + s.toString());
    return;
  }
  v.markSourceReleased();
  logInfo("volume " + v.name() + ": hydrated from snapshot " + v.sourceSnapshot() + " of " + v.sourceVolume() +
          "; the snapshot is no longer needed");
}

Result<ObjectStore*> Engine::storeFor(const std::string& url) {
  if (url.empty() || url == options_.storeUrl) return store_.get();
  std::lock_guard lock(storesMu_);
  auto it = sourceStores_.find(url);
  if (it != sourceStores_.end()) return it->second.get();
  auto opened = openStore(url);
  if (!opened) return opened.status().withContext("store " + url);
  if (options_.wrapStore) opened = options_.wrapStore(std::move(opened).value());
  ObjectStore* out = opened.value().get();
  sourceStores_.emplace(url, std::move(opened).value());
  return out;
}

Result<std::vector<std::string>> Engine::holders(ObjectStore& store, const std::string& volume,
                                                 const std::string& snapshot) {
  std::string prefix = snapshot.empty() ? holdsPrefix(volume) : holdsPrefix(volume, snapshot);
  auto listed = store.list(prefix);
  if (!listed) return listed.status().withContext("list the holds on " + volume);
  std::vector<std::string> out;
  for (const ObjectInfo& o : listed.value()) {
    std::string tail = o.key.substr(prefix.size());
    out.push_back(tail.substr(tail.rfind('/') + 1));
  }
  return out;
}

}  // namespace ferry
