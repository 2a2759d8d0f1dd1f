#pragma once
// The volume engine: the gateway's volumes, their cache and metadata, the store client,
// the uploader and the background threads (metadata commits, lease renewal). Used by
// the nbdkit plugin (one Engine per nbdkit process) and by the admin interface.
//
// Life cycle: open() (no threads; safe before nbdkit forks) -> start() -> shutdown().

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bandwidth_limiter.h"
#include "cache_budget.h"
#include "ferry/object_store.h"
#include "lease.h"
#include "metadata.h"
#include "task_pool.h"
#include "uploader.h"
#include "volume.h"

namespace ferry {

struct CreateSpec {
  std::string name;
  uint64_t size = 0;       // 0 with a source: the snapshot's size
  uint64_t chunkSize = 0;  // 0 = default (with a source: the snapshot's)
  // Made from snapshot sourceSnapshot of volume sourceVolume, in store sourceStore (a
  // URL; empty: this gateway's): readable at once, its chunks copied in the
  // background (engine_clones.cc).
  std::string sourceVolume, sourceSnapshot, sourceStore;
};
// "NAME:SIZE[:CHUNK]" as given to create=.
Result<CreateSpec> parseCreateSpec(const std::string& text);

struct EngineOptions {
  std::string stateDir;
  std::string storeUrl;
  std::vector<CreateSpec> creates;
  uint64_t cacheSize = uint64_t{1} << 30;
  uint64_t uploadBuffer = 0;  // 0 = half the cache
  size_t uploadThreads = 8;
  int leaseTtlSeconds = 30;
  int shutdownTimeoutSeconds = 60;
  int commitIntervalMs = 1000;
  int uploadDelayMs = 3000;    // a dirty chunk goes up after this long without writes …
  int uploadMaxAgeMs = 30000;  // … or this long after it became dirty
  bool takeover = false;
  bool cacheStreams = false;                    // keep chunks a sequential cold scan fetches
  uint64_t readAheadBytes = uint64_t{8} << 20;  // fetched ahead of a sequential reader
  size_t readAheadThreads = 4;
  size_t hydrateThreads = 4;  // copy the chunks of volumes made from a snapshot
  // When the upload buffer is half full, the changed pages of dirty chunks go to the
  // store's journal (a few segments at a time) instead of waiting for whole uploads.
  bool journal = true;
  // A recovery point (a snapshot "rp-…", the latest kept) of each changed volume this
  // often; 0 = none.
  int recoveryIntervalSeconds = 60;
  // A collection (Engine::collect) of every volume this often; 0 = only when asked.
  int collectIntervalSeconds = 3600;
  BandwidthLimits bandwidth;  // to and from the store; 0 = unlimited
  // Test seam: wraps the store client (fault injection). Unset in production.
  std::function<std::unique_ptr<ObjectStore>(std::unique_ptr<ObjectStore>)> wrapStore;
};

struct EngineStats {
  uint64_t cacheLimit = 0, cachedBytes = 0, uploadBuffer = 0, dirtyBytes = 0;
  uint64_t journaledBytes = 0;  // dirty chunks with every change in the journal
  size_t uploadQueue = 0, uploadsActive = 0;
  BandwidthLimits bandwidth;
  uint64_t uploadWaitedMicros = 0, downloadWaitedMicros = 0;  // spent waiting under the limits
  uint64_t uploadsHeldBack = 0, uploadsHeldBackMs = 0;        // upload requests behind clients' reads
  std::vector<VolumeStats> volumes;
};

class Engine : public VolumeHost {
 public:
  static Result<std::unique_ptr<Engine>> open(const EngineOptions& options);
  ~Engine() override;

  Status start();
  // Uploads what is dirty (bounded by the shutdown timeout), persists, releases the
  // leases and stops the threads. What could not be uploaded stays dirty for next time.
  void shutdown();

  std::vector<std::shared_ptr<Volume>> volumes();
  std::shared_ptr<Volume> find(const std::string& name);
  Result<std::shared_ptr<Volume>> createVolume(const CreateSpec& spec);
  // Deletes the volume and everything of it in the store; one another gateway took
  // over is only removed from this gateway (its cache, its rows), the store untouched.
  Status deleteVolume(const std::string& name, bool force);
  // Flushes, then waits until every write acknowledged before the call is in the
  // store; returns the chunk map of that recovery point (the snapshot hook).
  Result<std::vector<std::pair<uint64_t, uint64_t>>> checkpoint(const std::string& name, std::chrono::seconds timeout);
  EngineStats stats();

  // Snapshots (engine_snapshots.cc, docs/FORMAT.md). snapshot: freezes the volume
  // (Volume::beginFreeze: writers wait only for that critical section), waits until
  // the frozen content is in the store (up to timeout) and writes the manifest; made
  // before (the same id): that manifest, and *freeze is left as it was. deleteSnapshot: removes the manifest, then
  // every chunk object only it kept; an absent one is done.
  Result<SnapshotManifest> snapshot(const std::string& name, const std::string& id, std::chrono::seconds timeout,
                                    Volume::FreezeStats* freeze = nullptr);
  Status deleteSnapshot(const std::string& name, const std::string& id);
  Result<std::vector<std::string>> listSnapshots(const std::string& name);

  // Recovery points (engine_snapshots.cc): snapshots named kRecoveryPrefix + the time,
  // taken every recoveryIntervalSeconds of a volume that changed, the older ones
  // deleted once a newer one is stored (unless a volume is being made from one).
  // A volume made from snapshot kLatestRecoveryPoint is made from the newest.
  static constexpr const char* kRecoveryPrefix = "rp-";
  static constexpr const char* kLatestRecoveryPoint = "recovery-point";
  Result<SnapshotManifest> takeRecoveryPoint(const std::string& name);
  // Deletes every recovery point of the volume but the newest (and those held).
  void pruneRecoveryPoints(const std::string& name);
  // The recovery points of volume in store (the gateway's when null), oldest first.
  Result<std::vector<std::string>> listRecoveryPoints(const std::string& name, ObjectStore* store = nullptr);

  // Garbage collection: deletes the volume's chunk objects that nothing needs (left
  // behind by a crash, a failed delete, a gateway that lost the volume). Safe while
  // the volume is written and uploaded: see Volume::collectable. Progress in stats().
  struct CollectStats {
    uint64_t listed = 0, deleted = 0, kept = 0, errors = 0;
  };
  Result<CollectStats> collect(const std::string& name);
  // The last (or running) collection of a volume.
  CollectStats collectProgress(const std::string& name);

  // A lost gateway's store (engine_purge.cc): deletes every volume in the store at url
  // (never this gateway's own) with everything under it, snapshots included. Each
  // volume's lease is taken first (refused while live: its gateway may still run; a
  // gateway that comes back then refuses the volume), a volume still being made from a
  // snapshot releases its hold on it, and the manifests are withdrawn under the hold
  // protocol (refused while a volume anywhere reads one of them: left whole, its lease
  // given back). The others are deleted regardless; a rerun finishes the rest.
  struct PurgeResult {
    std::vector<std::pair<std::string, uint64_t>> deleted;  // volume, objects deleted
    std::vector<std::pair<std::string, Status>> refused;    // volume, why
  };
  Result<PurgeResult> purgeStore(const std::string& url);

  // Connections: a volume with open connections cannot be deleted.
  void connectionOpened(const std::string& name);
  void connectionClosed(const std::string& name);

  const std::string& stateDir() const { return options_.stateDir; }
  const std::string& gatewayId() { return meta_->gatewayId(); }

  // VolumeHost
  ObjectStore& store() override { return *store_; }
  Metadata& metadata() override { return *meta_; }
  CacheBudget& budget() override { return budget_; }
  void enqueueUpload(std::shared_ptr<Volume> volume, uint64_t index) override;
  bool reserveCache(uint64_t bytes) override;
  bool stopping() const override { return stopping_.load(); }
  bool draining() const override { return draining_.load() > 0; }
  bool releaseSpaceReserve() override;
  bool cacheStreams() const override { return options_.cacheStreams; }
  uint64_t readAheadBytes() const override { return options_.readAheadBytes; }
  bool submitReadAhead(std::function<void()> task) override { return readAhead_.submit(std::move(task)); }
  BandwidthLimiter& bandwidth() override { return bandwidth_; }
  bool journalEnabled() const override { return options_.journal; }
  ByteGate& batchMemory() override { return batchMemory_; }
  StorePriority& storePriority() override { return storePriority_; }

 private:
  Engine(EngineOptions options, std::unique_ptr<Metadata> meta, std::unique_ptr<ObjectStore> store);
  struct Held {
    std::shared_ptr<Volume> volume;
    std::shared_ptr<LeaseKeeper> lease;  // shared: renewals use it outside mu_
    int connections = 0;
  };
  // A volume found in the store: its chunks, the epochs in their generations, its
  // source (made from a snapshot), and the adopting: mark in the metadata.
  Status listForAdoption(const std::string& name, const VolumeHeader& h, std::vector<ChunkRow>* rows,
                         uint64_t* minEpoch, VolumeRow* source);
  // kFenced if another gateway held the volume since this one last did (its lease, at
  // a higher epoch, names another owner): the copy here is stale. Also if the volume
  // is gone from the store (no lease, no header: deleted there by a purge).
  Status checkNotStale(const VolumeRow& row, const std::vector<ChunkRow>& rows);
  // A volume's source store (made from a snapshot in another store), then its rows.
  Status loadRows(Volume& v, const VolumeRow& row, const std::vector<ChunkRow>& rows);
  // The cache file of a volume, refused if the rows say chunks are cached in it and
  // it is missing.
  Result<CacheFile> openCache(const VolumeRow& row, const std::vector<ChunkRow>& rows, bool fresh);
  // A volume of this gateway's state another gateway holds now (openVolume's refusal,
  // why): opened fenced, without the lease, serving this gateway's copy read-only.
  Result<Held> openLost(const VolumeRow& row, const std::vector<ChunkRow>& rows, const Status& why);
  Result<Held> openVolume(const VolumeRow& row, const std::vector<ChunkRow>& rows, bool fresh);
  // Flushes, then waits (draining the upload queue) until nothing acknowledged is
  // dirty, and commits the metadata: the recovery point of checkpoint and snapshot.
  Status waitStored(Volume& v, std::chrono::seconds timeout);
  // Pins what the volume's snapshot manifests in the store reference.
  Status loadSnapshotPins(Volume& v);
  Result<std::shared_ptr<Volume>> createLocked(const CreateSpec& spec);
  // Before a volume is created under a name the store has no header for: deletes what
  // a delete of a volume of that name cut short left behind (deleteVolume removes the
  // header first), or an adopting gateway would read the old chunks as the new
  // volume's. Under the name's lease (kBusy while another gateway holds it); raises
  // *minEpoch to the epochs of the old generations and of that lease.
  Status deleteLeftovers(const std::string& name, uint64_t* minEpoch);
  // Snapshot manifests of a volume as read from the store: key, body.
  using Manifests = std::vector<std::pair<std::string, std::string>>;
  Result<Manifests> readManifests(ObjectStore& store, const std::string& name);
  // REQUIRES: snapshotMu_ held. The deleting side of the hold protocol (FORMAT.md) for
  // manifests of volume `name` in `store` — of snapshot `id`, or of all its snapshots when id is
  // empty: refuses (busy) while a volume being made from one holds it; removes the
  // manifests; looks at the holds again and, if one appeared meanwhile, puts them back
  // (restoreManifests, as on any error) and refuses.
  Status withdrawManifests(ObjectStore& store, const std::string& name, const std::string& id,
                           const Manifests& manifests);
  void restoreManifests(ObjectStore& store, const Manifests& manifests);
  // What must go before a deleted volume's objects: its snapshot manifests, its header
  // and its hold on the snapshot it is made from; all put back on a failure.
  Status withdrawForDelete(Volume& volume);
  // The end of a delete, with no engine lock held: waits out the volume's store
  // writes on their way, then removes every object under its prefix.
  Status removeObjects(const std::string& name, Volume& volume);

  // engine_clones.cc: a volume made from a snapshot; the hydration threads; releasing
  // the snapshot once a volume is hydrated; whether a volume's snapshots are in use.
  Result<std::shared_ptr<Volume>> createFromSnapshot(const CreateSpec& spec);
  // The rows of a volume adopted from the store whose source.json says it is still
  // being made from a snapshot: its chunks with no object of their own come from it.
  Status addSourceRows(const std::string& name, std::vector<ChunkRow>& rows, VolumeRow* source);
  // The client for a source store URL (opened once; "" is this gateway's store).
  Result<ObjectStore*> storeFor(const std::string& url);
  void hydrateLoop();
  // Recovery points and collections on their intervals (one thread).
  void maintenanceLoop();
  void recoveryPointIfChanged(Volume& v);
  void finishHydration(Volume& v);
  // A snapshot of a volume still being made from one: copies the chunks it still reads
  // from its source now (a few threads, beside the hydration threads), then releases
  // the source. Fails when the store does or the deadline passes first.
  Status hydrateRest(Volume& v, std::chrono::steady_clock::time_point deadline);
  // engine_purge.cc: volume `name` of the store at url, being made from a snapshot
  // (its source.json), gives up its hold on it; not being made from one: nothing.
  Status releaseSourceHold(ObjectStore& store, const std::string& url, const std::string& name);
  // The volumes (holders) that still read snapshot `snapshot` of `volume` (all its
  // snapshots when empty).
  Result<std::vector<std::string>> holders(ObjectStore& store, const std::string& volume, const std::string& snapshot);
  static std::string adoptKey(const std::string& name);
  std::string cachePath(const std::string& name) const;
  // The volume's WrittenMap.
  std::string writtenPath(const std::string& name) const;
  // Copies of chunks rewritten while a snapshot of the volume is taken.
  std::string cowPath(const std::string& name) const;
  // Keeps kReserveBytes allocated in STATE/space.reserve while the disk has room.
  void ensureSpaceReserve();
  void backgroundLoop();
  void leaseLoop();
  void startRenewals();  // the lease thread
  void stopRenewals();
  // Renews the volume's lease; a volume taken over is fenced (and kFenced returned).
  Status renewLease(Volume& v, LeaseKeeper& lease);
  // Scope during which queued chunks go up at once.
  class Drain {
   public:
    explicit Drain(Engine& e) : e_(e) {
      ++e_.draining_;
      e_.uploader_.poke();
    }
    ~Drain() { --e_.draining_; }

   private:
    Engine& e_;
  };

  const EngineOptions options_;
  std::unique_ptr<Metadata> meta_;
  std::unique_ptr<ObjectStore> store_;
  CacheBudget budget_;
  BandwidthLimiter bandwidth_;
  // Two groups of 1 MiB chunks (volume_upload.cc) at once.
  ByteGate batchMemory_{64 << 20};
  // Two upload requests at once while clients read from the store (and 50 ms after),
  // unless uploadsUrgent().
  StorePriority storePriority_{[this] { return uploadsUrgent(); }, 2, std::chrono::milliseconds(50)};
  Uploader uploader_;
  TaskPool readAhead_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> draining_{0};          // checkpoints or a shutdown waiting for uploads
  std::atomic<bool> reserveHeld_{false};  // STATE/space.reserve is allocated
  bool started_ = false;
  bool shutDown_ = false;
  bool afterCrash_ = false;  // this start found the running mark: the last run crashed
  // A volume opened with objects of an earlier run unknown (a crash): collect soon.
  bool collectSoon_ = false;
  // Clears a volume's unknown-objects mark once a collection of it found everything.
  void objectsKnown(Volume& v);

  std::mutex mu_;                        // guards volumes_, opening_ and evictCursor_
  std::map<std::string, Held> volumes_;  // GUARDED_BY(mu_)
  // Leases of volumes still being opened or adopted (not in volumes_ yet): the lease
  // thread renews them too, so that a long start (takeovers waited out one after
  // another, a long listing) lets none of the leases it took first lapse.
  std::vector<std::shared_ptr<LeaseKeeper>> opening_;  // GUARDED_BY(mu_)
  // While it lives, lease is in opening_.
  class Opening {
   public:
    Opening(Engine& e, std::shared_ptr<LeaseKeeper> lease);
    ~Opening();
    Opening(const Opening&) = delete;
    Opening& operator=(const Opening&) = delete;

   private:
    Engine& engine_;
    std::shared_ptr<LeaseKeeper> lease_;
  };
  size_t evictCursor_ = 0;  // GUARDED_BY(mu_)
  std::mutex createMu_;     // one create/delete at a time (but for a delete's object removal)
  // Volumes whose delete still removes their objects from the store; a create of
  // the name waits for the end of that (GUARDED_BY(createMu_)).
  std::set<std::string> deleting_;
  std::condition_variable deleted_;
  std::mutex snapshotMu_;   // one snapshot change (or collection) at a time
  static constexpr size_t kSnapshotUploaders = 4;
  std::mutex collectMu_;  // guards collectProgress_
  std::map<std::string, CollectStats> collectProgress_;

  std::mutex bgMu_;
  std::condition_variable bgCv_;
  bool bgStop_ = false;        // GUARDED_BY(bgMu_)
  bool leaseStop_ = false;     // GUARDED_BY(bgMu_)
  bool leasesAdded_ = false;   // GUARDED_BY(bgMu_); the lease thread renews the new ones now
  uint64_t hydrateAdded_ = 0;  // GUARDED_BY(bgMu_); volumes made from a snapshot, for the hydrators
  std::thread background_;
  std::thread leases_;  // renewals (leaseLoop)
  std::vector<std::thread> hydrators_;
  std::thread maintenance_;
  // Checks the clean chunks a crash left in the cache files (verifyLoop); ends at once
  // when there are none.
  std::thread verifier_;
  void verifyLoop();
  // Journal writers (options_.journal): segments of changed pages while the upload
  // buffer is under pressure.
  std::vector<std::thread> journalers_;
  std::atomic<bool> journalIdle_{false};  // under pressure, found nothing to journal
  std::atomic<int> journalActive_{0};     // segments being written
  void journalLoop();
  // Whether dirty chunks go up at once rather than when idle (Uploader's hurry).
  bool uploadsInHurry() const;
  // Whether someone waits for the uploads (writers for room, a checkpoint, shutdown, a
  // buffer three-quarters full): then clients' reads do not hold them back.
  bool uploadsUrgent() const;
  // Whether cached dirty chunks the cache cannot evict (not journaled) fill three
  // quarters of it.
  bool cacheCrowded() const;
  // Whether the journal should take changed pages now: the upload buffer half full, the
  // cache crowded or writers waiting for room in it (journaled chunks can be evicted);
  // not while a drain waits.
  bool journalPressure() const;
  std::map<std::string, uint64_t> recoveryMarks_;  // only maintenanceLoop: changes() at the last point
  std::mutex hydrateMu_;                           // one finishHydration at a time
  std::mutex storesMu_;                            // guards sourceStores_
  std::mutex purgeMu_;                             // one purgeStore at a time
  std::map<std::string, std::unique_ptr<ObjectStore>> sourceStores_;
};

}  // namespace ferry
