#include "engine.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "ferry/log.h"
#include "ferry/strings.h"
#include "format.h"
#include "journal_format.h"
#include "written_map.h"

namespace ferry {
namespace {

// Room kept on the cache disk for metadata commits when the disk fills up.
constexpr off_t kReserveBytes = 4 << 20;

int64_t nowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The newest generation of every chunk a store listing shows, as metadata rows.
Result<std::vector<ChunkRow>> rowsFromStore(ObjectStore& store, const std::string& name, uint64_t chunks,
                                            uint64_t* maxEpoch) {
  auto listing = store.list(chunksPrefix(name));
  if (!listing) return listing.status().withContext("list chunks of volume " + name);
  std::map<uint64_t, ChunkRow> newest;
  std::string prefix = chunksPrefix(name);
  for (const ObjectInfo& o : listing.value()) {
    auto key = parseChunkKey(std::string_view(o.key).substr(prefix.size()));
    if (!key || key->index >= chunks) {
      logError("volume " + name + ": ignoring unexpected object " + o.key);
      continue;
    }
    *maxEpoch = std::max(*maxEpoch, key->generation >> 32);
    ChunkRow& r = newest[key->index];
    if (key->generation > r.remoteGen) {
      r = ChunkRow{key->index, key->generation, o.size == 0 ? uint32_t{kFlagRemoteZero} : 0u};
    }
  }
  std::vector<ChunkRow> rows;
  for (auto& [_, r] : newest) rows.push_back(r);
  return rows;
}

}  // namespace

Result<CreateSpec> parseCreateSpec(const std::string& text) {
  CreateSpec spec;
  size_t a = text.find(':');
  if (a == std::string::npos) return Status::invalid("create=" + text + ": expected NAME:SIZE[:CHUNK]");
  spec.name = text.substr(0, a);
  size_t b = text.find(':', a + 1);
  auto size = parseSize(text.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1));
  if (!size) return size.status().withContext("create=" + text);
  spec.size = size.value();
  if (b != std::string::npos) {
    auto chunk = parseSize(text.substr(b + 1));
    if (!chunk) return chunk.status().withContext("create=" + text);
    spec.chunkSize = chunk.value();
  }
  if (Status s = checkVolumeName(spec.name); !s) return s;
  return spec;
}

Engine::Engine(EngineOptions options, std::unique_ptr<Metadata> meta, std::unique_ptr<ObjectStore> store)
    : options_(std::move(options)),
      meta_(std::move(meta)),
      store_(std::move(store)),
      budget_(options_.cacheSize, options_.uploadBuffer),
      uploader_(options_.uploadThreads, std::chrono::milliseconds(options_.uploadDelayMs),
                std::chrono::milliseconds(options_.uploadMaxAgeMs), [this] { return uploadsInHurry(); }),
      // A few chunks queued per thread at most: read-ahead that cannot start soon is
      // not worth doing.
      readAhead_(options_.readAheadThreads, 2 * options_.readAheadThreads) {
  bandwidth_.set(options_.bandwidth);
}

Engine::~Engine() {
  shutdown();
}

bool Engine::uploadsInHurry() const {
  if (draining_.load() > 0) return true;
  if (!options_.journal) return budget_.dirty() * 2 >= budget_.dirtyLimit();
  // The journal relieves the upload buffer from half full on, and the cache when dirty
  // chunks crowd it or writers wait for room (a journaled chunk can be evicted); whole
  // uploads hurry only when it finds nothing it can take (chunks changed throughout)
  // and, for writers waiting for room, no journaled chunk is left to evict. (Not when
  // it is busy with other chunks meanwhile: those it cannot take wait for upload-delay.)
  return journalIdle_.load() &&
         (budget_.dirty() * 4 >= budget_.dirtyLimit() * 3 || cacheCrowded() ||
          (budget_.roomWanted() && budget_.journaled() == 0 && budget_.cached() * 8 >= budget_.cacheLimit() * 7));
}

bool Engine::uploadsUrgent() const {
  return stopping_.load() || uploadsInHurry() || budget_.roomWanted() ||
         budget_.dirty() * 4 >= budget_.dirtyLimit() * 3;
}

bool Engine::cacheCrowded() const {
  uint64_t pinned = budget_.pinned(), journaled = budget_.journaled();
  uint64_t unevictable = pinned > journaled ? pinned - journaled : 0;
  return unevictable * 4 >= budget_.cacheLimit() * 3;
}

bool Engine::journalPressure() const {
  return (budget_.dirty() * 2 >= budget_.dirtyLimit() || cacheCrowded() || budget_.roomWanted()) &&
         draining_.load() == 0;
}

void Engine::journalLoop() {
  constexpr uint64_t kSegmentBytes = 4 << 20;
  uint64_t failures = 0;  // in a row: the first and every 20th are logged, as uploads are
  while (!stopping_) {
    uint64_t wrote = 0;
    uint64_t seen = budget_.releases();  // before looking: a wake from here on ends the wait below
    bool pressure = journalPressure();
    if (pressure) {
      for (auto& v : volumes()) {
        if (v->fenced()) continue;
        ++journalActive_;
        auto r = v->journalSome(kSegmentBytes);
        --journalActive_;
        if (r) {
          wrote += r.value();
          failures = 0;
        } else if (r.status().code() != Code::kFenced) {
          if (failures++ % 20 == 0) {
            logError(r.status().toString() + " (will retry; " + std::to_string(failures) + " in a row)");
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
      }
    }
    // Under pressure with nothing to journal (and no segment on its way): whole uploads
    // must make the room.
    bool idle = pressure && wrote == 0 && journalActive_.load() == 0;
    if (journalIdle_.exchange(idle) != idle && idle) uploader_.poke();
    // Without pressure, until the upload buffer reaches half full (addDirty wakes it)
    // or a drain ends (seen within a second; within 50 ms while dirty chunks hold half
    // the cache, which nothing wakes it for); under pressure with nothing written,
    // again soon: uploads are making changes.
    int waitMs = pressure ? 10 : budget_.pinned() * 2 >= budget_.cacheLimit() ? 50 : 1000;
    if (wrote == 0) budget_.waitForRelease(seen, std::chrono::milliseconds(waitMs));
  }
}

namespace {
// meta key readopt:<volume> = "SIZE:CHUNK": a stale copy discarded (takeover=true),
// the volume still to be adopted from the store.
constexpr const char* kReadoptPrefix = "readopt:";
// meta key running = "1" from the open of a gateway on the state dir to the end of its
// clean shutdown: found set, the last run crashed.
constexpr const char* kRunningKey = "running";
// meta key unknown-objects:<volume> = "1": the volume may have objects of an earlier
// run that no row names (uploads in flight at a crash), until a collection succeeds.
constexpr const char* kUnknownObjectsPrefix = "unknown-objects:";
}  // namespace

Result<std::unique_ptr<Engine>> Engine::open(const EngineOptions& in) {
  EngineOptions options = in;
  if (options.stateDir.empty() || options.stateDir.front() != '/') {
    return Status::invalid("state= must be an absolute directory path, got '" + options.stateDir + "'");
  }
  if (options.storeUrl.empty()) return Status::invalid("store= is required (file:///path or s3://bucket/…)");
  if (options.uploadBuffer == 0) options.uploadBuffer = options.cacheSize / 2;
  if (options.cacheSize < 4 * kMaxChunkSize / 16) {
    return Status::invalid("cache-size must be at least 16M, got " + std::to_string(options.cacheSize));
  }
  if (options.uploadBuffer > options.cacheSize) {
    return Status::invalid("upload-buffer (" + std::to_string(options.uploadBuffer) +
                           ") must not be larger than cache-size (" + std::to_string(options.cacheSize) + ")");
  }
  if (options.leaseTtlSeconds < 3 || options.leaseTtlSeconds > LeaseKeeper::kMaxTtlSeconds) {
    return Status::invalid("lease-ttl must be between 3 and " + std::to_string(LeaseKeeper::kMaxTtlSeconds) +
                           " seconds");
  }
  if (options.uploadThreads < 1 || options.uploadThreads > 256) {
    return Status::invalid("upload-threads must be between 1 and 256");
  }
  auto meta = Metadata::open(options.stateDir, true);
  if (!meta) return meta.status();
  auto store = openStore(options.storeUrl);
  if (!store) return store.status().withContext("store " + options.storeUrl);
  if (options.wrapStore) store = options.wrapStore(std::move(store).value());
  std::unique_ptr<Engine> e(new Engine(options, std::move(meta).value(), std::move(store).value()));
  // Set from here to the end of a clean shutdown: found set, the last run crashed.
  auto running = e->meta_->getMeta(kRunningKey);
  if (!running) return running.status();
  if (!running.value().empty()) {
    e->afterCrash_ = true;
    auto all = e->meta_->volumes();
    if (!all) return all.status();
    for (const VolumeRow& row : all.value()) {
      // Writes after a chunk's last commit may be in its cache and not in its row: in
      // the chunks its written map marks, or in any when nothing tells (another boot).
      const uint64_t chunks = chunksFor(row.size, row.chunkSize);
      auto only = WrittenMap::marked(e->writtenPath(row.name), chunks);
      if (Status s = e->meta_->markChangesUnsure(row.id, only); !s) return s.withContext("volume " + row.name);
      logInfo("volume " + row.name + ": after a crash, " +
              (only ? std::to_string(only->size()) + " chunks written since their last commit are"
                    : std::string("no map of the chunks written since their last commit (another boot): every "
                                  "cached chunk is")) +
              " taken as holding writes their rows lack (clean ones stay cached if their bytes match their "
              "checksums)");
      // Every volume's mark before any is opened: it stays until a collection of that
      // volume succeeds, whatever happens to this start.
      if (Status s = e->meta_->setMeta(kUnknownObjectsPrefix + row.name, "1"); !s) return s;
    }
  }
  if (Status s = e->meta_->setMeta(kRunningKey, "1"); !s) return s;
  // Renewals from the first lease taken: opening the volumes can take longer than a
  // lease lasts (each takeover waits out its old owner). Stopped again before open
  // returns, however it returns: nbdkit forks between open and start(), and a thread
  // does not survive a fork. start() renews every lease at once.
  e->startRenewals();
  struct StopRenewals {
    Engine* engine;
    ~StopRenewals() { engine->stopRenewals(); }
  } stopRenewals{e.get()};

  auto rows = e->meta_->volumes();
  if (!rows) return rows.status();
  for (const VolumeRow& row : rows.value()) {
    auto chunks = e->meta_->chunks(row.id);
    if (!chunks) return chunks.status().withContext("volume " + row.name);
    Status why = e->checkNotStale(row, chunks.value());
    if (why) {
      auto held = e->openVolume(row, chunks.value(), false);
      if (held) {
        std::lock_guard lock(e->mu_);
        e->volumes_.emplace(row.name, std::move(held).value());
        continue;
      }
      if (held.status().code() != Code::kBusy) return held.status();
      why = held.status();  // another gateway holds it (took it while this one started)
    } else if (why.code() != Code::kFenced) {
      return why;
    }
    if (options.takeover && why.code() == Code::kFenced) {
      // A stale copy: it goes, and the volume is adopted from the store below (the key
      // says so across a crash in between).
      logError(why.message() + "; takeover=true: discarding this gateway's copy");
      std::string spec = std::to_string(row.size) + ":" + std::to_string(row.chunkSize);
      if (Status s = e->meta_->setMeta(kReadoptPrefix + row.name, spec); !s) return s;
      if (Status s = e->meta_->removeVolume(row.id); !s) return s;
      std::error_code ec;
      std::filesystem::remove(e->cachePath(row.name), ec);
      std::filesystem::remove(e->writtenPath(row.name), ec);
      std::filesystem::remove(e->cowPath(row.name), ec);
      continue;
    }
    // Another gateway's now: served read-only from this gateway's copy (until it is
    // deleted here, or a takeover=true start discards it), so that the other volumes
    // still start.
    auto lost = e->openLost(row, chunks.value(), why);
    if (!lost) return lost.status();
    std::lock_guard lock(e->mu_);
    e->volumes_.emplace(row.name, std::move(lost).value());
  }
  auto readopt = e->meta_->metaWithPrefix(kReadoptPrefix);
  if (!readopt) return readopt.status();
  for (const auto& [key, value] : readopt.value()) {
    CreateSpec spec;
    spec.name = key.substr(std::string_view(kReadoptPrefix).size());
    if (std::sscanf(value.c_str(), "%" SCNu64 ":%" SCNu64, &spec.size, &spec.chunkSize) != 2) {
      return Status::corruption("metadata: " + key + " = '" + value + "' is not SIZE:CHUNK");
    }
    if (!e->volumes_.count(spec.name)) {
      auto header = e->store_->getAll(headerKey(spec.name));
      if (!header && header.status().code() == Code::kNotFound) {
        logError("volume " + spec.name + " is no longer in the store; not adopting it again");
      } else if (auto v = header ? e->createLocked(spec) : Result<std::shared_ptr<Volume>>(header.status()); !v) {
        // Tried again at the next start; the other volumes are served meanwhile.
        logError(v.status().withContext("adopt volume " + spec.name + " again").toString());
        continue;
      }
    }
    if (Status s = e->meta_->deleteMeta(key); !s) return s;
  }
  for (const CreateSpec& spec : options.creates) {
    if (e->volumes_.count(spec.name)) continue;
    auto v = e->createLocked(spec);
    if (!v) return v.status();
  }
  return e;
}

// Present in the metadata from the start of adopting a volume from the store until its
// journal has been applied.
std::string Engine::adoptKey(const std::string& name) {
  return "adopting:" + name;
}

std::string Engine::cachePath(const std::string& name) const {
  return options_.stateDir + "/" + name + ".cache";
}
std::string Engine::writtenPath(const std::string& name) const {
  return options_.stateDir + "/" + name + ".written";
}
std::string Engine::cowPath(const std::string& name) const {
  return options_.stateDir + "/" + name + ".cow";
}

Status Engine::checkNotStale(const VolumeRow& row, const std::vector<ChunkRow>& rows) {
  auto cur = readLease(*store_, row.name);
  if (!cur) return cur.status();
  const std::optional<LeaseInfo>& l = cur.value();
  size_t dirty = std::count_if(rows.begin(), rows.end(), [](const ChunkRow& r) { return r.flags & kFlagDirty; });
  if (l && l->owner != meta_->gatewayId() && l->epoch > row.epoch) {
    return Status::fenced("volume " + row.name + " was taken over by gateway " + l->owner + " on " + l->host +
                          " (epoch " + std::to_string(l->epoch) + ") after this gateway last held it (epoch " +
                          std::to_string(row.epoch) + "): the copy here is stale (" + std::to_string(dirty) +
                          " chunks changed here were never uploaded); delete it on this gateway, or start with "
                          "takeover=true to discard it and serve the store's content");
  }
  auto header = store_->getAll(headerKey(row.name));
  if (header) return Status::ok();
  if (header.status().code() != Code::kNotFound) return header.status().withContext("volume " + row.name);
  if (!l) {
    // No lease and no header: a volume is leased from before its row is written, so
    // its lease went with it when the volume was deleted from the store by someone
    // else (a purge of this gateway's store, taken for lost). Serving it as usual would
    // bring back a volume the customer let go of (a fresh lease, these chunks in an
    // empty prefix).
    return Status::fenced("volume " + row.name +
                          " is no longer in the store (deleted there by another gateway: a "
                          "purge of this gateway's store?); the copy here (" +
                          std::to_string(dirty) +
                          " chunks changed here were never uploaded) is not put back; delete it on this gateway, "
                          "or start with takeover=true to drop it");
  }
  // Leased, but with no header: a delete cut short after its header went (FORMAT.md),
  // here or by the gateway holding the lease. What is left in the store goes when a
  // volume of that name is created; serving it would write to objects that will.
  return Status::fenced("volume " + row.name + " was being deleted (its header is gone from the store; " +
                        std::to_string(dirty) + " chunks changed here were never uploaded): delete it on this " +
                        "gateway to finish");
}

Result<Engine::Held> Engine::openVolume(const VolumeRow& row, const std::vector<ChunkRow>& rows, bool fresh) {
  Held held;
  held.lease = std::make_shared<LeaseKeeper>(*store_, row.name, meta_->gatewayId(), options_.leaseTtlSeconds);
  auto epoch = held.lease->acquire(row.epoch, options_.takeover);
  if (!epoch) return epoch.status();
  Opening opening(*this, held.lease);
  if (Status s = meta_->setEpoch(row.id, epoch.value()); !s) return s;

  size_t dirtyRows = std::count_if(rows.begin(), rows.end(), [](const ChunkRow& r) { return r.flags & kFlagDirty; });
  auto cache = openCache(row, rows, fresh);
  if (!cache) return cache.status();
  std::error_code ec;
  std::filesystem::remove(cowPath(row.name), ec);  // a snapshot a crash interrupted
  held.volume = std::make_shared<Volume>(*this, row, std::move(cache).value(), epoch.value());
  held.volume->setLeaseValidUntil(held.lease->validUntil(), held.lease->requestGrace());
  // Emptied: a crash start has already marked the rows its bits named.
  auto written = WrittenMap::open(writtenPath(row.name), held.volume->chunkCount());
  if (written) {
    held.volume->useWrittenMap(std::move(written).value());
  } else {
    // (A full disk.) Without a map a start after a crash distrusts every cached chunk:
    // safe, only colder. An old map left in place would be trusted: it must go.
    std::filesystem::remove(writtenPath(row.name), ec);
    if (ec) return written.status().withContext("volume " + row.name);
    logError("volume " + row.name + ": " + written.status().toString() +
             "; without it a start after a crash distrusts every cached chunk");
  }
  if (Status s = loadRows(*held.volume, row, rows); !s) return s;
  if (!fresh) {
    auto unknown = meta_->getMeta(kUnknownObjectsPrefix + row.name);
    if (!unknown) return unknown.status();
    if (!unknown.value().empty()) {
      held.volume->objectsUnknownBelow(epoch.value() << 32);
      collectSoon_ = true;
    }
  } else if (Status s = meta_->deleteMeta(kUnknownObjectsPrefix + row.name); !s) {
    // New, or adopted from a listing of the store: a mark left by a deleted volume of
    // the same name does not apply.
    return s;
  }
  // Before the journal is applied: an object it supersedes may be a snapshot's.
  if (Status s = loadSnapshotPins(*held.volume); !s) return s;
  // Even with the journal off now: segments an earlier run (or a lost gateway) wrote.
  // Applied to clean chunks only while adopting the volume from the store (until it
  // has succeeded once, across crashes).
  auto adopt = meta_->getMeta(adoptKey(row.name));
  if (!adopt) return adopt.status();
  // Applying the journal stores and deletes objects: on a confirmation fresh enough
  // (lease.h) however long the open took so far.
  if (Status s = held.lease->renew(); !s) return s.withContext("volume " + row.name);
  held.volume->setLeaseValidUntil(held.lease->validUntil(), held.lease->requestGrace());
  if (Status s = held.volume->openJournal(!adopt.value().empty()); !s) return s.withContext("volume " + row.name);
  if (!adopt.value().empty()) {
    if (Status s = meta_->deleteMeta(adoptKey(row.name)); !s) return s;
  }
  logInfo("volume " + row.name + ": " + std::to_string(row.size) + " bytes, epoch " + std::to_string(epoch.value()) +
          ", " + std::to_string(dirtyRows) + " dirty chunks to upload");
  return held;
}

void Engine::objectsKnown(Volume& v) {
  v.objectsKnown();
  if (Status s = meta_->deleteMeta(kUnknownObjectsPrefix + v.name()); !s) {
    logError("volume " + v.name() + ": clear the unknown-objects mark: " + s.toString());
  }
}

Status Engine::loadRows(Volume& v, const VolumeRow& row, const std::vector<ChunkRow>& rows) {
  if (!row.sourceStore.empty()) {
    auto source = storeFor(row.sourceStore);
    if (!source) return source.status().withContext("volume " + row.name + ": the store of its snapshot");
    v.setSourceStore(source.value());
  }
  if (Status s = v.load(rows); !s) return s;
  // The chunks markChangesUnsure took out of the cache leave their bytes behind (but
  // those it left to verify: verifyLoop).
  if (afterCrash_) v.punchUncached();
  return Status::ok();
}

Result<CacheFile> Engine::openCache(const VolumeRow& row, const std::vector<ChunkRow>& rows, bool fresh) {
  size_t cachedRows = 0, dirtyRows = 0;
  for (const ChunkRow& r : rows) {
    if (r.flags & (kFlagCached | kFlagPatched)) ++cachedRows;  // patched: pages only there
    if (r.flags & kFlagDirty) ++dirtyRows;
  }
  std::string path = cachePath(row.name);
  std::error_code ec;
  if (fresh) {
    // A new or adopted volume has nothing cached. A file left by an earlier copy (a
    // crash between discarding the copy and removing its file) would keep its blocks
    // on disk outside the cache budget: emptied (absent is fine).
    std::filesystem::resize_file(path, 0, ec);
  }
  if (!fresh && cachedRows > 0 && !std::filesystem::exists(path, ec)) {
    return Status::corruption("volume " + row.name + ": cache file " + path + " is missing but the metadata says " +
                              std::to_string(cachedRows) + " chunks are cached there (" + std::to_string(dirtyRows) +
                              " not yet uploaded); restore the file, or delete the volume's state to serve the "
                              "store's last uploaded content");
  }
  return CacheFile::open(path, row.size, false);
}

Result<Engine::Held> Engine::openLost(const VolumeRow& row, const std::vector<ChunkRow>& rows, const Status& why) {
  Held held;
  // Never acquired: nothing renews or releases the lease of a fenced volume.
  held.lease = std::make_shared<LeaseKeeper>(*store_, row.name, meta_->gatewayId(), options_.leaseTtlSeconds);
  auto cache = openCache(row, rows, false);
  if (!cache) return cache.status();
  held.volume = std::make_shared<Volume>(*this, row, std::move(cache).value(), row.epoch);
  // Fenced before its rows load: nothing of it counts in the upload buffer or goes up.
  held.volume->fence(why.message());
  if (Status s = loadRows(*held.volume, row, rows); !s) return s;
  // Its chunks evicted into the journal are read back from the segments.
  if (Status s = held.volume->openJournal(false); !s) {
    logError("volume " + row.name + ": " + s.toString() +
             "; chunks of it that were only in the journal cannot be read");
  }
  logError(why.message() + "; serving this gateway's copy read-only until the volume is deleted here");
  return held;
}

Result<std::shared_ptr<Volume>> Engine::createLocked(const CreateSpec& in) {
  if (!in.sourceVolume.empty() || !in.sourceSnapshot.empty()) {
    if (Status s = checkVolumeName(in.name); !s) return s;
    return createFromSnapshot(in);
  }
  CreateSpec spec = in;
  if (spec.chunkSize == 0) spec.chunkSize = kDefaultChunkSize;
  if (Status s = checkVolumeName(spec.name); !s) return s;
  if (Status s = checkGeometry(spec.size, spec.chunkSize); !s) return s.withContext("volume " + spec.name);
  if (spec.chunkSize * 4 > options_.cacheSize) {
    return Status::invalid("volume " + spec.name + ": chunk size " + std::to_string(spec.chunkSize) +
                           " needs a cache-size of at least four chunks");
  }
  std::vector<ChunkRow> rows;
  uint64_t minEpoch = 0;
  VolumeRow source;  // adopted while still being made from a snapshot: its source
  auto existing = store_->getAll(headerKey(spec.name));
  if (existing) {
    // The store already has this volume (a replaced gateway): serve its content.
    auto h = decodeHeader(existing.value());
    if (!h) return h.status().withContext("volume " + spec.name);
    if (h->size != spec.size || h->chunkSize != spec.chunkSize) {
      return Status::invalid("volume " + spec.name + " already exists in the store with size " +
                             std::to_string(h->size) + " and chunk size " + std::to_string(h->chunkSize) +
                             "; ask for the same geometry to serve it");
    }
    // The lease before the listing: an owner still alive (a takeover) has stopped
    // changing the volume by then (lease.h). openVolume takes it again, above every
    // epoch listed.
    auto early = std::make_shared<LeaseKeeper>(*store_, spec.name, meta_->gatewayId(), options_.leaseTtlSeconds);
    if (auto e = early->acquire(0, options_.takeover); !e) return e.status();
    Opening opening(*this, early);
    Status s = listForAdoption(spec.name, *h, &rows, &minEpoch, &source);
    // No renewal of it from here on: openVolume takes the lease at a new epoch, and
    // a renewal racing the release could write the lease back.
    early->retire();
    if (!s) {
      early->release();
      return s;
    }
    logInfo("volume " + spec.name + ": adopting it from the store (" + std::to_string(rows.size()) + " chunks)");
  } else if (existing.status().code() == Code::kNotFound) {
    // An adoption of the same name cut short before its volume row: nothing to adopt now.
    if (Status s = meta_->deleteMeta(adoptKey(spec.name)); !s) return s;
    if (Status s = deleteLeftovers(spec.name, &minEpoch); !s) return s.withContext("create volume " + spec.name);
    VolumeHeader h{kFormatVersion, spec.name, spec.size, spec.chunkSize, nowUnix()};
    std::string body = encodeHeader(h);
    Status s = store_->put(headerKey(spec.name), bytesOf(body));
    if (!s) return s.withContext("create volume " + spec.name);
  } else {
    return existing.status().withContext("create volume " + spec.name);
  }
  // The volume and its rows in one transaction: a crash between the two would leave
  // a volume that reads as zeros.
  auto row = meta_->addVolume(spec.name, spec.size, spec.chunkSize, nowUnix(), source.sourceVolume,
                              source.sourceSnapshot, source.sourceStore, rows);
  if (!row) return row.status();
  row->epoch = minEpoch;
  auto held = openVolume(row.value(), rows, true);
  if (!held) {
    meta_->removeVolume(row->id);
    meta_->deleteMeta(adoptKey(spec.name));
    return held.status();
  }
  auto v = held->volume;
  std::lock_guard lock(mu_);
  volumes_.emplace(spec.name, std::move(held).value());
  return v;
}

Status Engine::listForAdoption(const std::string& name, const VolumeHeader& h, std::vector<ChunkRow>* rows,
                               uint64_t* minEpoch, VolumeRow* source) {
  auto listed = rowsFromStore(*store_, name, chunksFor(h.size, h.chunkSize), minEpoch);
  if (!listed) return listed.status();
  *rows = std::move(listed).value();
  if (Status s = addSourceRows(name, *rows, source); !s) return s;
  return meta_->setMeta(adoptKey(name), "1");
}

Status Engine::deleteLeftovers(const std::string& name, uint64_t* minEpoch) {
  auto listing = store_->list(volumePrefix(name));
  if (!listing) return listing.status().withContext("look for what a deleted volume " + name + " left in the store");
  if (listing.value().empty()) return Status::ok();
  const std::string chunks = chunksPrefix(name), journal = journalPrefix(name);
  for (const ObjectInfo& o : listing.value()) {
    // The new volume's generations go above these: were one of them to outlive its
    // delete (a PUT still on its way), the new volume's objects are still the newest.
    std::optional<uint64_t> gen;
    if (o.key.starts_with(chunks)) {
      if (auto k = parseChunkKey(std::string_view(o.key).substr(chunks.size()))) gen = k->generation;
    } else if (o.key.starts_with(journal)) {
      gen = parseJournalKey(std::string_view(o.key).substr(journal.size()));
    }
    if (gen) *minEpoch = std::max(*minEpoch, *gen >> 32);
  }
  // Under the name's lease, taken as an adoption takes it: a volume still alive with
  // no header (another gateway in the middle of deleting it, a purge) is refused, not
  // wiped, and an owner's unreleased lease is waited out. openVolume takes it again.
  auto early = std::make_shared<LeaseKeeper>(*store_, name, meta_->gatewayId(), options_.leaseTtlSeconds);
  auto epoch = early->acquire(0, options_.takeover,
                              "a volume of that name is being deleted there; create it once that is done");
  if (!epoch) return epoch.status();
  *minEpoch = std::max(*minEpoch, epoch.value());
  Opening opening(*this, early);
  logInfo("volume " + name + ": deleting the " + std::to_string(listing.value().size()) +
          " objects a deleted volume of that name left in the store");
  Status s;
  for (const ObjectInfo& o : listing.value()) {
    if (o.key == leaseKey(name)) continue;
    if (s = store_->remove(o.key); !s) {
      s = s.withContext("delete what a deleted volume " + name + " left in the store (" + o.key + ")");
      break;
    }
  }
  early->retire();
  if (!s) early->release();
  return s;
}

Result<std::shared_ptr<Volume>> Engine::createVolume(const CreateSpec& spec) {
  std::unique_lock create(createMu_);
  // A delete of that name still removing its objects: the new volume comes after them.
  deleted_.wait(create, [&] { return deleting_.count(spec.name) == 0; });
  if (find(spec.name)) return Status::busy("volume " + spec.name + " already exists");
  return createLocked(spec);
}

Status Engine::deleteVolume(const std::string& name, bool force) {
  std::unique_lock create(createMu_);
  // No snapshot or recovery point of it is taken or deleted meanwhile.
  std::unique_lock snapshots(snapshotMu_);
  std::shared_ptr<Volume> volume;
  std::shared_ptr<LeaseKeeper> lease;
  {
    std::lock_guard lock(mu_);
    auto it = volumes_.find(name);
    if (it == volumes_.end()) return Status::notFound("no volume named " + name);
    if (it->second.connections > 0 && !force) {
      return Status::busy("volume " + name + " has " + std::to_string(it->second.connections) +
                          " open connections; disconnect them first");
    }
    volume = it->second.volume;
    lease = it->second.lease;
  }
  // Taken over by another gateway (now, or found out before): the volume in the store
  // is that gateway's, and only this gateway's copy goes.
  bool lost = volume->fenced();
  if (!lost) {
    Status s = renewLease(*volume, *lease);
    lost = s.code() == Code::kFenced;
    if (!s && !lost) return s.withContext("delete volume " + name);
  }
  if (!lost) {
    if (Status s = withdrawForDelete(*volume); !s) return s;
  }
  Held held;
  {
    std::lock_guard lock(mu_);
    auto it = volumes_.find(name);
    if (it == volumes_.end()) return Status::notFound("no volume named " + name);
    held = std::move(it->second);
    volumes_.erase(it);
  }
  held.lease->retire();  // no renewal brings lease.json back once it is deleted
  held.volume->fence("was deleted");
  held.volume->releaseBudget();
  if (Status s = meta_->removeVolume(held.volume->id()); !s) {
    return s.withContext("delete volume " + name + " (gone from the store's point of view: a start serves it " +
                         "read-only until it is deleted again)");
  }
  std::error_code ec;
  std::filesystem::remove(cachePath(name), ec);
  std::filesystem::remove(writtenPath(name), ec);
  std::filesystem::remove(cowPath(name), ec);
  if (lost) {
    logInfo("volume " + name + " removed from this gateway; it was fenced (another gateway holds it, or a delete " +
            "of it was cut short), so nothing of it was deleted from the store");
    return Status::ok();
  }
  // The rest removes its objects from the store, which takes a request per object (and
  // the wait for its uploads on their way): other volumes' creates, deletes and
  // snapshots go on meanwhile, and a create of this name waits for the end of it.
  deleting_.insert(name);
  snapshots.unlock();
  create.unlock();
  // However the removal ends (an exception too), a create of the name waits no longer.
  struct Done {
    Engine& engine;
    const std::string& name;
    std::unique_lock<std::mutex>& create;
    ~Done() {
      create.lock();
      engine.deleting_.erase(name);
      engine.deleted_.notify_all();
    }
  } done{*this, name, create};
  return removeObjects(name, *held.volume);
}

Status Engine::removeObjects(const std::string& name, Volume& volume) {
  // Its header went in withdrawForDelete: whatever of it a failure below leaves goes
  // when a volume of that name is created (deleteLeftovers).
  const std::string left = " (what is left of it in the store goes when a volume of that name is created)";
  if (!volume.waitStoreWrites(std::chrono::seconds(5))) {
    logError("volume " + name + ": an upload or journal segment of it (or the read before its PUT) was still " +
             "on its way past its lease's deadline; a PUT of it that lands after the listing below stays in the " +
             "store until a volume of that name is created");
  }
  auto listing = store_->list(volumePrefix(name));
  if (!listing) return listing.status().withContext("delete volume " + name + left);
  for (const ObjectInfo& o : listing.value()) {
    if (Status s = store_->remove(o.key); !s) return s.withContext("delete volume " + name + left);
  }
  logInfo("volume " + name + " deleted");
  return Status::ok();
}

Status Engine::withdrawForDelete(Volume& volume) {
  const std::string& name = volume.name();
  // Its snapshot manifests go first, under the hold protocol (FORMAT.md).
  const std::string nothing = "delete volume " + name + " (nothing of it was deleted)";
  auto manifests = readManifests(*store_, name);
  if (!manifests) return manifests.status().withContext(nothing);
  if (Status s = withdrawManifests(*store_, name, "", manifests.value()); !s) return s.withContext(nothing);
  // Then the header: from here on no gateway adopts the volume, and whatever of it a
  // later failure leaves goes when a volume of that name is created (deleteLeftovers).
  // A failure before the end of this function puts back what went: the volume stays
  // whole, and served, for the delete to be tried again.
  auto header = store_->getAll(headerKey(name));
  Status s = header || header.status().code() == Code::kNotFound ? Status::ok() : header.status();
  if (s && header) s = store_->remove(headerKey(name));
  if (!s && header) {
    // A delete that failed may still have happened (a timeout after the server did it).
    auto still = store_->getAll(headerKey(name));
    if (!still && still.status().code() == Code::kNotFound) {
      s = Status::ok();
    } else if (!still) {
      volume.fence("its delete could not tell whether its header is still in the store: " + still.status().toString());
      return s.withContext("delete volume " + name + " (its header may be gone: the volume is read-only now; " +
                           "delete it again)");
    }
  }
  if (!s) {
    restoreManifests(*store_, manifests.value());
    return s.withContext(nothing);
  }
  // Made from a snapshot and not hydrated yet: that snapshot is free again.
  if (volume.hydrating()) {
    auto source = storeFor(volume.sourceStoreUrl());
    s = source.status();
    if (s) s = source.value()->remove(holdKey(volume.sourceVolume(), volume.sourceSnapshot(), name));
    if (!s) {
      restoreManifests(*store_, manifests.value());
      s = s.withContext("release snapshot " + volume.sourceSnapshot() + " of " + volume.sourceVolume());
      if (header) {
        if (Status back = store_->put(headerKey(name), bytesOf(header.value())); !back) {
          // Served on with no header, a create of the name elsewhere would wipe it.
          volume.fence("its delete could not put its header back: " + back.toString());
          return s.withContext("delete volume " + name + " (its header could not be put back: the volume is " +
                               "read-only now; delete it again)");
        }
      }
      return s.withContext(nothing);
    }
  }
  return Status::ok();
}

std::vector<std::shared_ptr<Volume>> Engine::volumes() {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<Volume>> out;
  for (auto& [_, h] : volumes_) out.push_back(h.volume);
  return out;
}

std::shared_ptr<Volume> Engine::find(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = volumes_.find(name);
  return it == volumes_.end() ? nullptr : it->second.volume;
}

void Engine::connectionOpened(const std::string& name) {
  std::lock_guard lock(mu_);
  if (auto it = volumes_.find(name); it != volumes_.end()) ++it->second.connections;
}

void Engine::connectionClosed(const std::string& name) {
  std::lock_guard lock(mu_);
  if (auto it = volumes_.find(name); it != volumes_.end()) --it->second.connections;
}

void Engine::enqueueUpload(std::shared_ptr<Volume> volume, uint64_t index) {
  uploader_.enqueue(std::move(volume), index);
}

bool Engine::reserveCache(uint64_t bytes) {
  for (int round = 0; round < 4; ++round) {
    if (budget_.tryReserveCached(bytes)) return true;
    std::vector<std::shared_ptr<Volume>> vols;
    size_t start;
    {
      std::lock_guard lock(mu_);
      for (auto& [_, h] : volumes_) vols.push_back(h.volume);
      start = evictCursor_++;
    }
    if (vols.empty()) return false;
    uint64_t freed = 0;
    for (size_t i = 0; i < vols.size() && budget_.cached() + bytes > budget_.cacheLimit(); ++i) {
      freed += vols[(start + i) % vols.size()]->evictSome(16);
    }
    if (freed == 0) return budget_.tryReserveCached(bytes);
  }
  return budget_.tryReserveCached(bytes);
}

Result<std::vector<std::pair<uint64_t, uint64_t>>> Engine::checkpoint(const std::string& name,
                                                                      std::chrono::seconds timeout) {
  auto v = find(name);
  if (!v) return Status::notFound("no volume named " + name);
  if (Status s = waitStored(*v, timeout); !s) return s;
  return v->remoteMap();
}

Status Engine::waitStored(Volume& v, std::chrono::seconds timeout) {
  if (v.fenced()) return Status::fenced("volume " + v.name() + " " + v.stats().lastError);
  Drain drain(*this);
  if (Status s = v.persist(); !s) return s;
  if (!v.waitClean(std::chrono::steady_clock::now() + timeout)) {
    auto st = v.stats();
    if (st.fenced) return Status::fenced("volume " + v.name() + " " + st.lastError);
    return Status::unavailable("volume " + v.name() + ": " + std::to_string(st.dirtyChunks) +
                               " chunks still not uploaded after " + std::to_string(timeout.count()) + " s" +
                               (st.lastError.empty() ? "" : " (last error: " + st.lastError + ")"));
  }
  return v.persist();
}

void Engine::ensureSpaceReserve() {
  if (reserveHeld_) return;
  std::string path = options_.stateDir + "/space.reserve";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  if (::fallocate(fd, 0, 0, kReserveBytes) == 0) {
    reserveHeld_ = true;
  } else {
    (void)!::ftruncate(fd, 0);  // no room yet: try again at the next commit
  }
  ::close(fd);
}

bool Engine::releaseSpaceReserve() {
  if (!reserveHeld_.exchange(false)) return false;
  logError("cache disk full: releasing the " + std::to_string(kReserveBytes >> 20) + " MiB reserve in " +
           options_.stateDir + " for metadata");
  return ::truncate((options_.stateDir + "/space.reserve").c_str(), 0) == 0;
}

Status Engine::start() {
  if (started_) return Status::ok();
  started_ = true;
  ensureSpaceReserve();
  uploader_.start();
  if (options_.readAheadBytes > 0) readAhead_.start();
  background_ = std::thread([this] { backgroundLoop(); });
  startRenewals();
  for (size_t i = 0; i < options_.hydrateThreads; ++i) hydrators_.emplace_back([this] { hydrateLoop(); });
  if (options_.journal) {
    for (int i = 0; i < 2; ++i) journalers_.emplace_back([this] { journalLoop(); });
  }
  if (options_.recoveryIntervalSeconds > 0 || options_.collectIntervalSeconds > 0) {
    maintenance_ = std::thread([this] { maintenanceLoop(); });
  }
  // (Also after a clean stop that came before every chunk a crash left was checked.)
  verifier_ = std::thread([this] { verifyLoop(); });
  return Status::ok();
}

void Engine::verifyLoop() {
  for (auto& v : volumes()) {
    if (stopping_) return;
    const Volume::Checked done = v->verifyUnverified();
    if (done.checked == 0) continue;
    logInfo("volume " + v->name() + ": " + std::to_string(done.kept) + " of " + std::to_string(done.checked) +
            " clean chunks the crash left in the cache matched their checksums and stay cached");
  }
}

void Engine::backgroundLoop() {
  std::unique_lock lock(bgMu_);
  while (!bgStop_) {
    bgCv_.wait_for(lock, std::chrono::milliseconds(options_.commitIntervalMs), [&] { return bgStop_; });
    if (bgStop_) break;
    lock.unlock();
    for (auto& v : volumes()) {
      if (Status s = v->persist(); !s) logError(s.toString());
      v->deleteSuperseded();
    }
    ensureSpaceReserve();
    lock.lock();
  }
}

Engine::Opening::Opening(Engine& e, std::shared_ptr<LeaseKeeper> lease) : engine_(e), lease_(std::move(lease)) {
  {
    std::lock_guard lock(engine_.mu_);
    engine_.opening_.push_back(lease_);
  }
  // Renewed at once: a lease just taken over was written before the wait for its old
  // owner, so it may have little time left.
  {
    std::lock_guard lock(engine_.bgMu_);
    engine_.leasesAdded_ = true;
  }
  engine_.bgCv_.notify_all();
}

Engine::Opening::~Opening() {
  std::lock_guard lock(engine_.mu_);
  std::erase(engine_.opening_, lease_);
}

void Engine::startRenewals() {
  {
    std::lock_guard lock(bgMu_);
    leaseStop_ = false;
  }
  leases_ = std::thread([this] { leaseLoop(); });
}

void Engine::stopRenewals() {
  {
    std::lock_guard lock(bgMu_);
    leaseStop_ = true;
  }
  bgCv_.notify_all();
  if (leases_.joinable()) leases_.join();
}

// Its own thread: a slow persist or a long run of deletes never delays a renewal
// (which would stop the volume's uploads until the next one, lease.h).
void Engine::leaseLoop() {
  using Clock = std::chrono::steady_clock;
  const auto every = std::chrono::milliseconds(options_.leaseTtlSeconds * 1000 / 4);
  const auto retry = std::min(every, std::chrono::milliseconds(1000));
  // Each lease when due: at once at start (opening the volumes may have taken a
  // while), then every ttl/4, or within a second after a failed renewal.
  // By the lease itself, not its address: a new lease may take a freed one's.
  std::map<std::shared_ptr<LeaseKeeper>, Clock::time_point> due;
  std::map<std::shared_ptr<LeaseKeeper>, std::string> openingErrors;  // said once each, as renewLease does
  std::unique_lock lock(bgMu_);
  while (!leaseStop_) {
    leasesAdded_ = false;
    lock.unlock();
    // (volume, lease); no volume for a lease of a volume still being opened
    std::vector<std::pair<std::shared_ptr<Volume>, std::shared_ptr<LeaseKeeper>>> leases;
    {
      std::lock_guard vl(mu_);
      for (auto& [_, h] : volumes_) leases.emplace_back(h.volume, h.lease);
      for (auto& lease : opening_) leases.emplace_back(nullptr, lease);
    }
    std::map<std::shared_ptr<LeaseKeeper>, Clock::time_point> next;
    std::map<std::shared_ptr<LeaseKeeper>, std::string> errors;
    auto wake = Clock::now() + every;
    for (auto& [v, lease] : leases) {
      auto it = due.find(lease);
      Clock::time_point when = it == due.end() ? Clock::time_point() : it->second;
      if (Clock::now() >= when) {
        auto started = Clock::now();
        Status s;
        if (v) {
          s = renewLease(*v, *lease);
        } else {
          s = lease->renew();
          // Whoever is opening the volume finds a lost lease itself (its next renewal
          // or checkOurs): said here only for the log.
          if (!s && !lease->retired() && s.toString() != openingErrors[lease]) {
            logError("renew lease of volume " + lease->volume() + " while opening it: " + s.toString());
          }
          if (!s) errors[lease] = s.toString();
        }
        // The next one ttl/4 after this one started, as its confirmation counts from
        // there: on a slow store (two requests of 200 ms at lease-ttl=3) timing it from
        // the end left the lease unconfirmed for a moment every round. Never at once
        // (a renewal slower than ttl/4 must not turn into a stream of them), and a
        // second after a failure, from when it failed.
        when =
            s || s.code() == Code::kFenced ? std::max(started + every, Clock::now() + every / 4) : Clock::now() + retry;
      } else if (auto e = openingErrors.find(lease); e != openingErrors.end()) {
        errors.insert(*e);
      }
      next[lease] = when;
      wake = std::min(wake, when);
    }
    due.swap(next);
    openingErrors.swap(errors);
    lock.lock();
    bgCv_.wait_until(lock, wake, [&] { return leaseStop_ || leasesAdded_; });
  }
}

Status Engine::renewLease(Volume& v, LeaseKeeper& lease) {
  if (v.fenced()) return Status::fenced("volume " + v.name() + " " + v.stats().lastError);
  Status s = lease.renew();
  std::string before = v.setLeaseError(s ? std::string() : s.toString());
  if (s) {
    v.setLeaseValidUntil(lease.validUntil(), lease.requestGrace());
  } else if (s.code() == Code::kFenced) {
    uint64_t kept = v.fence(s.message());
    logError(s.message() + (kept == 0 ? std::string()
                                      : "; " + std::to_string(kept) +
                                            " chunks changed here since their last upload stay in the cache, "
                                            "readable, until the volume is deleted on this gateway or the "
                                            "cache needs the room"));
  } else if (s.toString() != before) {  // retried every second: said once, until it changes
    logError("renew lease of volume " + v.name() + ": " + s.toString());
  }
  return s;
}

void Engine::shutdown() {
  if (shutDown_) return;
  shutDown_ = true;
  Drain drain(*this);
  if (started_) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options_.shutdownTimeoutSeconds);
    for (auto& v : volumes()) {
      if (!v->fenced() && !v->waitClean(deadline)) {
        logError("volume " + v->name() + ": " + std::to_string(v->stats().dirtyChunks) +
                 " chunks not uploaded before the shutdown timeout; they stay dirty for the next start");
      }
    }
  }
  // Past the timeout: a transfer waiting for its turn under a bandwidth limit goes now
  // (or fails fast), so the threads below can be joined.
  bandwidth_.close();
  stopping_ = true;
  budget_.wake();
  readAhead_.stop();
  uploader_.stop();
  {
    std::lock_guard lock(bgMu_);
    bgStop_ = true;
  }
  bgCv_.notify_all();
  if (background_.joinable()) background_.join();
  for (std::thread& t : hydrators_) t.join();
  for (std::thread& t : journalers_) t.join();
  if (maintenance_.joinable()) maintenance_.join();
  if (verifier_.joinable()) verifier_.join();
  hydrators_.clear();
  journalers_.clear();
  // Store and disk I/O below: not under mu_. createMu_ keeps the Held entries (and
  // their leases) in place meanwhile.
  std::lock_guard create(createMu_);
  std::vector<std::pair<std::shared_ptr<Volume>, std::shared_ptr<LeaseKeeper>>> held;
  {
    std::lock_guard lock(mu_);
    for (auto& [_, h] : volumes_) held.emplace_back(h.volume, h.lease);
  }
  // A row not committed here may lack writes its cache holds: the running mark then
  // stays, and the next start takes the dirty cached chunks as such (as after a crash).
  bool persisted = true;
  for (auto& [v, lease] : held) {
    if (Status s = v->persist(); !s) {
      logError(s.toString() + "; the next start takes this stop as a crash");
      persisted = false;
    }
    v->deleteSuperseded();
  }
  // Renewals stop only now: the deletes above still needed a confirmed lease.
  stopRenewals();
  for (auto& [v, lease] : held) {
    if (v->stats().dirtyChunks == 0 && !v->fenced()) {
      if (Status s = lease->release(); !s) logError("release lease of " + v->name() + ": " + s.toString());
    }
  }
  // Every upload has ended, given up on or not: nothing is in flight to land unrecorded.
  // Not after an open that failed (not started): its volumes were not all marked.
  if (started_ && persisted) {
    if (Status s = meta_->deleteMeta(kRunningKey); !s) logError("clear the running mark: " + s.toString());
  }
}

EngineStats Engine::stats() {
  EngineStats s;
  s.cacheLimit = budget_.cacheLimit();
  s.cachedBytes = budget_.cached();
  s.uploadBuffer = budget_.dirtyLimit();
  s.dirtyBytes = budget_.dirty();
  s.journaledBytes = budget_.journaled();
  s.uploadQueue = uploader_.depth();
  s.uploadsActive = uploader_.active();
  s.uploadsHeldBack = storePriority_.heldBack();
  s.uploadsHeldBackMs = storePriority_.heldBackMs();
  s.bandwidth = bandwidth_.get();
  s.uploadWaitedMicros = bandwidth_.uploadWaitedMicros();
  s.downloadWaitedMicros = bandwidth_.downloadWaitedMicros();
  for (auto& v : volumes()) s.volumes.push_back(v->stats());
  return s;
}

}  // namespace ferry
