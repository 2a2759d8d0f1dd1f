#pragma once
// A volume: a sequence of chunks, each zero, remote (in the store, not cached) or
// cached in the volume's cache file, and clean or dirty. Reads and writes go to the
// cache file; the uploader turns dirty chunks into new immutable generations in the
// store. docs/volume-engine.md describes the states and the durability rules.
//
// Locking: mu_ guards every ChunkState field except ioRefs (atomic). No disk or
// network I/O happens under mu_. A chunk being filled from the store or evicted is
// `busy`; others wait on cv_ for it. Lock order: persistMu_ -> mu_ -> budget.

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bandwidth_limiter.h"
#include "byte_gate.h"
#include "cache_budget.h"
#include "cache_file.h"
#include "ferry/object_store.h"
#include "format.h"
#include "journal_format.h"
#include "metadata.h"
#include "pin_counts.h"
#include "read_window.h"
#include "rebuild_plan.h"
#include "store_priority.h"
#include "written_map.h"

namespace ferry {

class Volume;

// What a volume needs from the engine that holds it.
class VolumeHost {
 public:
  virtual ~VolumeHost() = default;
  virtual ObjectStore& store() = 0;
  virtual Metadata& metadata() = 0;
  virtual CacheBudget& budget() = 0;
  virtual void enqueueUpload(std::shared_ptr<Volume> volume, uint64_t index) = 0;
  // Makes room for bytes in the cache, evicting clean chunks of any volume; false when
  // nothing can be evicted now (everything dirty or in use).
  virtual bool reserveCache(uint64_t bytes) = 0;
  virtual bool stopping() const = 0;
  // Whether a checkpoint or a shutdown is waiting for every dirty chunk to be stored.
  virtual bool draining() const = 0;
  // Frees the space the engine keeps in reserve on the cache disk, so that metadata
  // can still be committed (and chunks evicted) when the disk is full. False if there
  // was none left to free.
  virtual bool releaseSpaceReserve() = 0;
  // Whether chunks fetched by a sequential stream of cold reads are kept in the cache.
  virtual bool cacheStreams() const = 0;
  // How far ahead of a sequential reader chunks are fetched (0 = no read-ahead), and
  // where: false when the read-ahead threads are busy (the fetch is skipped).
  virtual uint64_t readAheadBytes() const = 0;
  virtual bool submitReadAhead(std::function<void()> task) = 0;
  // The gateway's limits on chunk transfers to and from the store.
  virtual BandwidthLimiter& bandwidth() = 0;
  // Whether the changed pages of dirty chunks may go to the store's journal when the
  // upload buffer fills (volume_journal.cc).
  virtual bool journalEnabled() const = 0;
  // What uploads of neighbours rebuilt together may hold in chunk buffers at once.
  virtual ByteGate& batchMemory() = 0;
  // Clients' reads first at the store, uploads nobody waits for after them.
  virtual StorePriority& storePriority() = 0;
};

// kJournal: a journaled chunk evicted from the cache (dirty, not cached): its content
// is its newest object (zeros for none or a tombstone) with the pieces of its changes
// in the journal's stored segments applied over it, in order.
// kPatched: dirty, not cached whole: as kJournal (with or without pieces), then the
// pages of its newest writes, which only the cache file holds (its page map). A write
// of whole pages to a chunk not cached lands there without reading the chunk; the
// journal takes those pages, and the chunk is then kJournal again.
enum class Where : uint8_t { kZero, kRemote, kCached, kJournal, kPatched };

// What the engine knows of one chunk (its metadata row, in memory).
struct ChunkState {
  uint64_t remoteGen = 0;           // newest generation in the store (0 = none)
  uint32_t writeSeq = 0;            // bumped by every change of content
  uint32_t lastWriteMs = 0;         // engine clock (ms) of the last write
  uint32_t dirtySinceMs = 0;        // engine clock (ms) when it last became dirty
  uint32_t charged = 0;             // bytes it counts in the upload buffer (recount)
  uint32_t patchBytes = 0;          // kPatched: the cache its pages take (settlePatch)
  std::atomic<uint16_t> ioRefs{0};  // readers inside the cache file: not evictable
  Where where = Where::kZero;
  bool dirty = false;
  bool remoteZero = false;  // the newest generation is a zero tombstone
  bool busy = false;        // being filled or evicted: wait on cv_
  bool queued = false;      // in the upload queue
  bool uploading = false;
  bool referenced = false;   // CLOCK bit for eviction
  bool metaPending = false;  // changed since the last persist()
  bool frozen = false;       // a snapshot still needs its content at the freeze
  bool journaled = false;    // dirty, every change in the journal: not in the upload buffer
  bool journaling = false;   // its pages are in a journal segment being written
  // Dirty with changes no journal piece has (cached at a restart, or zeroed): not
  // evicted into the journal until it is stored whole.
  bool cacheOnly = false;
  uint8_t rangeReads = 0;    // small reads served from the store by range GETs
  // The CRC-32C of generation remoteGen's content, where this gateway had it whole
  // (stored it, or fetched it into the cache).
  std::optional<uint32_t> crc;
  // After a crash, its cache file slot perhaps still holding that generation
  // (kFlagVerify): cached again if the bytes there match crc (verifyCached). Counts
  // while the chunk is remote (awaitsCheck).
  bool unverified = false;

  // Leaves the cache only once stored whole (its row says so: kFlagCacheOnly).
  bool pinnedUntilStored() const { return where == Where::kCached && dirty && cacheOnly; }
  // Remote, its slot in the cache file still to be checked against crc.
  bool awaitsCheck() const { return unverified && where == Where::kRemote; }
};

// How uploadChunk goes. The uploader's waits (uploadWaitMs): a neighbour is taken
// along when they are over for it too, or a checkpoint or shutdown drains (not when
// pressure hurries uploads: storing chunks evicted into the journal frees no cache).
struct UploadTurn {
  uint32_t idleMs = 0, maxAgeMs = 0;
  // Taken from the uploader's queue; not for a chunk a snapshot needs stored now
  // (Engine::hydrateRest), which leaves its queue entry be.
  bool fromQueue = true;
  // Before clients' reads while a SnapshotHurry is held (uploadTurn).
  bool forSnapshot = false;
};

struct VolumeStats {
  std::string name;
  uint64_t size = 0;
  uint64_t chunkSize = 0;
  uint64_t chunks = 0;
  uint64_t cachedChunks = 0;
  uint64_t dirtyChunks = 0;
  uint64_t remoteChunks = 0;
  uint64_t cachedBytes = 0;
  uint64_t dirtyBytes = 0;
  uint64_t uploadedBytes = 0;
  uint64_t downloadedBytes = 0;
  uint64_t uploads = 0;
  uint64_t uploadErrors = 0;
  uint64_t readHits = 0;
  uint64_t readMisses = 0;
  uint64_t rangeReads = 0;
  uint64_t journalReads = 0;
  uint64_t zeroReads = 0;
  uint64_t readAheadFetches = 0;  // chunks fetched ahead of a sequential reader
  uint64_t readAheadHits = 0;     // reads served from those
  uint64_t journaledChunks = 0;   // dirty chunks whose changes are all in the journal
  uint64_t journalOnlyChunks = 0;  // of those, evicted: read back from object + segments
  uint64_t cacheOnlyChunks = 0;    // dirty, cached, leaving the cache only stored whole
  uint64_t patchedChunks = 0;      // not cached whole: their newest pages in the cache
  uint64_t unverifiedChunks = 0;   // after a crash: their cache not checked against its crc yet
  uint64_t verifiedChunks = 0;     // of those, found to match and cached again
  uint64_t verifyFailures = 0;     // of those, not matching (or no room): read from the store
  uint64_t journalSegments = 0;   // segments in the store still needed
  uint64_t journalWrites = 0;     // segments written
  uint64_t journalBytes = 0;      // page bytes written to the journal
  uint64_t queued = 0;
  std::string source;          // "volume/snapshot" while made from a snapshot
  uint64_t hydrationLeft = 0;  // chunks still read from the source
  uint64_t hydratedBytes = 0;
  bool fenced = false;
  std::string lastError;
};

// Whether every byte is zero (an all-zero chunk is stored as a tombstone or not at all).
bool allZero(std::span<const uint8_t> bytes);

// Runs of pages set (or, with set false, not set) in a page map, as [first, end).
std::vector<std::pair<uint64_t, uint64_t>> pageRuns(const std::vector<uint64_t>& bits, uint64_t pages, bool set);
// How many bits are set (pages in a page map).
uint64_t countBits(const std::vector<uint64_t>& bits);

// Milliseconds on a steady clock, wrapping every ~49 days; compare by subtraction.
uint32_t engineClockMs();

class Volume : public std::enable_shared_from_this<Volume> {
 public:
  Volume(VolumeHost& host, VolumeRow row, CacheFile cache, uint64_t epoch);

  // Loads persisted chunk rows; queues dirty chunks for upload. Call once, before use.
  Status load(const std::vector<ChunkRow>& rows);
  // Marks each chunk in `map` before its cache is written, clears it once a commit
  // holds the write. Before load.
  void useWrittenMap(WrittenMap map) { written_.emplace(std::move(map)); }
  // Punches the cache file's ranges of chunks that are neither cached nor patched
  // (bytes a crash left behind there, outside the cache budget), nor unverified. After
  // load, before use.
  void punchUncached();
  // After a start that distrusted clean cached chunks (or one that followed a stop
  // before they were all checked): checks each unverified one (verifyCached, in room
  // the cache has free: chunks clients brought in meanwhile are not evicted for them),
  // until the engine stops. Returns how many it checked, and cached again.
  struct Checked {
    uint64_t checked = 0, kept = 0;
  };
  Checked verifyUnverified();

  const std::string& name() const { return row_.name; }
  int64_t id() const { return row_.id; }
  uint64_t size() const { return row_.size; }
  uint64_t chunkSize() const { return row_.chunkSize; }
  uint64_t chunkCount() const { return states_.size(); }

  // The data path. Offsets are checked against the size by the caller (nbdkit).
  Status read(uint64_t offset, std::span<uint8_t> out);
  Status write(uint64_t offset, std::span<const uint8_t> data, bool fua);
  Status zero(uint64_t offset, uint64_t length, bool fua);
  Status flush() { return persist(); }

  // Uploader: stores the chunk's current content as a new generation; buf is the
  // worker's, resized to a chunk. A chunk in the journal takes along the due ones of
  // its group of neighbours waiting in the queue (kUploadBatchBytes), rebuilt together.
  // Returns a transient status to be retried later.
  Status uploadChunk(uint64_t index, std::vector<uint8_t>& buf, const UploadTurn& turn = UploadTurn{});
  // How long the uploader should leave a dirty chunk alone: until it has been idle
  // for idleMs, but never past maxAgeMs since it became dirty (a journaled chunk:
  // until maxAgeMs). 0 = upload now.
  uint32_t uploadWaitMs(uint64_t index, uint32_t idleMs, uint32_t maxAgeMs);
  // Puts a dirty chunk whose upload failed back in the queue.
  void requeue(uint64_t index);
  // Evictor: frees up to maxChunks unused cached chunks (clean, or journaled); returns
  // bytes freed from the cache budget. Their space on the cache disk is punched after
  // the next persist() commits rows that say so.
  uint64_t evictSome(size_t maxChunks);
  // Makes every change durable: fdatasync the cache file, then commit chunk rows.
  Status persist();
  // Removes superseded generations that persist() made safe to delete.
  void deleteSuperseded();

  // The journal (volume_journal.cc). journalSome: writes one segment with the changed
  // pages of dirty chunks that only this gateway has (up to maxBytes of pages; chunks
  // changed in more than a quarter of their pages are left to a whole upload); those
  // chunks then leave the upload buffer. Returns the bytes of pages written (0: none
  // to write); they may then be evicted from the cache (Where::kJournal) and are read
  // back from their object and segments (rebuild). openJournal: at open, reads the
  // volume's segments. A chunk dirty here keeps the segments with changes newer than
  // its object until it goes up whole; one in the journal with none of them is an
  // error (its changes would be lost). When
  // adopting (the store's content is all this gateway has of the volume: a lost
  // gateway replaced, or a takeover into a fresh state dir), a chunk that is not dirty
  // gets those changes applied and stored whole; otherwise this gateway's metadata is
  // the truth and they are void (a segment whose PUT failed here but landed, an older
  // owner's after a takeover, a deleted volume's of the same name). Segments no dirty
  // chunk needs are then deleted.
  Result<uint64_t> journalSome(uint64_t maxBytes);
  Status openJournal(bool adopt);

  // Blocks until no chunk is dirty or the deadline passes; false on timeout.
  bool waitClean(std::chrono::steady_clock::time_point deadline);
  // The newest generation of every stored chunk: what a snapshot would reference.
  std::vector<std::pair<uint64_t, uint64_t>> remoteMap();

  // Snapshots. A chunk object a manifest references is never deleted as superseded.
  // pinCurrent: the newest stored generations, pinned in the same critical section (no
  // upload can supersede and delete one in between); pin: a manifest read from the
  // store; unpin: a manifest's pins dropped — the keys no other manifest pins and the
  // volume no longer points at, which the caller deletes.
  std::vector<ChunkKey> pinCurrent();
  void pin(const std::vector<ChunkKey>& keys);
  std::vector<std::string> unpin(const std::vector<ChunkKey>& keys);

  // The copy-on-write freeze of a snapshot (volume_freeze.cc). beginFreeze: in one
  // critical section (the only pause writers see), pins every stored clean chunk and
  // marks every dirty one frozen, reserving it a generation below any later upload.
  // Until the snapshot has it, a write to a frozen chunk first copies the chunk to
  // the copy-on-write file (cowPath); an upload that started after the freeze stores
  // the frozen content itself. completeFreeze: uploads the copies under their
  // reserved generations, and stores the frozen chunks not copied whole as the
  // volume's next generation, uploadChunk's way (with a SnapshotHurry held, before
  // clients' reads; the volume's other chunks keep their upload-delay), until
  // deadline; a failed upload fails it (the chunk stays queued). endFreeze: the
  // snapshot's chunks (all pinned); abortFreeze: unpins, returns the keys the freeze
  // uploaded, which the caller deletes.
  struct FreezeStats {
    uint64_t pauseMicros = 0;  // writers held out
    uint64_t frozen = 0;       // dirty chunks at the freeze
    uint64_t copied = 0;       // rewritten before they were stored: copied and uploaded
  };
  Result<FreezeStats> beginFreeze(const std::string& cowPath);
  Status completeFreeze(std::chrono::steady_clock::time_point deadline);
  std::vector<ChunkKey> endFreeze(FreezeStats* stats);
  std::vector<std::string> abortFreeze();

  // Collection of leaked chunk objects (Engine::collect). generationFloor: every
  // generation this volume has made so far is at most this; one above it may be an
  // upload in flight. collectable: an object no one needs — not the chunk's newest
  // generation, not being uploaded, not pinned by a snapshot, not already queued for
  // deletion as superseded.
  uint64_t generationFloor() const { return (epoch_ << 32) | genCounter_.load(); }
  bool collectable(uint64_t index, uint64_t generation);

  // A volume made from a snapshot (volume_hydrate.cc): a chunk it has not made its own
  // yet has remoteGen = the snapshot's generation | kSourceGen, read from the source
  // volume's object. hydrateOne copies the next such chunk into the volume's own
  // objects (like an upload: nothing else uploads the chunk meanwhile). kWait: none
  // can be copied now (in use, or an error, in *error); kDone: none is left. Each copy
  // waits its turn behind clients' reads from the store, as an upload nobody waits
  // for, unless a SnapshotHurry is held. A chunk with changes in the journal is not
  // copied (the copy would void them) but stored whole by an upload: with kWait and
  // none to copy, *storeWhole names one such chunk no upload has under way.
  static constexpr uint64_t kSourceGen = uint64_t{1} << 63;
  enum class HydrateStep { kCopied, kWait, kDone };
  HydrateStep hydrateOne(Status* error, std::optional<uint64_t>* storeWhole = nullptr);
  // Held while a snapshot waits for the volume's store requests (Engine::hydrateRest's
  // copies, completeFreeze's uploads): those go before clients' reads meanwhile, and
  // only this volume's.
  class SnapshotHurry {
   public:
    explicit SnapshotHurry(Volume& v) : v_(v) { ++v_.snapshotHurry_; }
    ~SnapshotHurry() { --v_.snapshotHurry_; }
    SnapshotHurry(const SnapshotHurry&) = delete;
    SnapshotHurry& operator=(const SnapshotHurry&) = delete;

   private:
    Volume& v_;
  };
  uint64_t hydrationLeft() const { return hydrationLeft_.load(); }
  const std::string& sourceVolume() const { return row_.sourceVolume; }
  const std::string& sourceSnapshot() const { return row_.sourceSnapshot; }
  const std::string& sourceStoreUrl() const { return row_.sourceStore; }
  // The store the source's objects are in (the engine's own when the row names none).
  // Set once, before load().
  void setSourceStore(ObjectStore* store) { sourceStore_ = store; }
  // Made from a snapshot and not yet released from it (Engine::finishHydration).
  bool hydrating() const { return !row_.sourceVolume.empty() && !sourceReleased_.load(); }
  void markSourceReleased() { sourceReleased_ = true; }

  // Counts writes and zeroes: whether the volume changed since a recovery point.
  uint64_t changes() const { return changes_.load(); }
  // The creation time of the snapshot a volume was made from (0: none, or unknown).
  int64_t sourceCreatedUnix() const { return sourceCreated_.load(); }
  void setSourceCreated(int64_t t) { sourceCreated_ = t; }

  // After a lease loss (or before a delete): refuses writes and uploads from now on,
  // and gives back the volume's share of the upload buffer. Returns the chunks changed
  // here and not stored whole that stay readable (cached, or in the journal) until the
  // volume is deleted.
  uint64_t fence(const std::string& why);
  // After fence(), for a delete: waits until no PUT of this volume (an upload, a
  // journal segment, a hydrated chunk) is still on its way to the store, so that none
  // lands after the delete lists the volume's objects. Each runs under the lease's
  // deadline (underLease); false if one is still out `margin` past it.
  bool waitStoreWrites(std::chrono::milliseconds margin);
  bool fenced() const { return fenced_.load(); }
  // Until when the volume's lease is confirmed (LeaseKeeper::validUntil): uploads,
  // journal segments and deletes in the store wait for a renewal past it. A request
  // begun before then must be done within grace after it (LeaseKeeper::requestGrace:
  // within the margin a gateway taking the volume over waits beyond it, lease rule 5
  // in FORMAT.md).
  void setLeaseValidUntil(std::chrono::steady_clock::time_point t, std::chrono::milliseconds grace) {
    leaseGraceMs_ = grace.count();
    leaseValidUntil_ = t.time_since_epoch().count();
  }
  // Whether this gateway may change the volume in the store now: kFenced once fenced,
  // kUnavailable while the lease is not confirmed (lease.h).
  Status leaseCheck() const;
  // An upload request's turn at the store, behind clients' reads; at once when the
  // volume is fenced (the request fails then, and a delete waits for it), and for the
  // copies and uploads a snapshot waits for (SnapshotHurry).
  StorePriority::Upload uploadTurn(bool forSnapshot = false) {
    return host_.storePriority().upload(
        [this, forSnapshot] { return fenced_.load() || (forSnapshot && snapshotHurry_.load() > 0); });
  }
  // leaseCheck, then op, whose store requests must be done by the confirmation plus
  // its grace (StoreDeadline): an S3 request retried, or answered late, past that
  // fails rather than change the store after a new owner may have read it.
  Status underLease(const std::function<Status()>& op) const;
  // After a crash, an upload in flight may have stored an object of any chunk, above
  // the generation its row recorded (the row was not committed yet): an earlier run's.
  // Until a collection has deleted such objects (objectsKnown), zeros over any chunk
  // need a tombstone, or a gateway adopting the volume would read that object.
  void objectsUnknownBelow(uint64_t generation) { unknownBelow_ = generation; }
  void objectsKnown() { unknownBelow_ = 0; }
  // Deletes key from the store under the lease. A store error is noted as the volume's
  // last error and returned (the object stays for a collection to find; nothing is
  // lost). Once the lease is not confirmed (or the volume is fenced) it returns why,
  // without noting it, and sets *leaseLapsed: the caller stops there and leaves the
  // rest for later.
  Status removeUnderLease(const std::string& key, bool* leaseLapsed);
  // Why the last renewal failed (empty once one succeeds): leaseCheck's errors say it.
  // Returns the one before.
  std::string setLeaseError(std::string why) {
    std::lock_guard lock(leaseMu_);
    std::swap(leaseError_, why);
    return why;
  }
  void noteError(const std::string& error);

  VolumeStats stats();
  // Frees the cache budget this volume holds (before it is deleted).
  void releaseBudget();

 private:
  uint64_t chunkLength(uint64_t index) const;
  // Its 4 KiB pages (the last one short in a volume's last chunk).
  uint64_t pageCount(uint64_t index) const { return pagesFor(chunkLength(index)); }
  // The object holding generation gen of the chunk: the volume's, or its source's,
  // and the store it is in.
  std::string objectKey(uint64_t index, uint64_t gen) const;
  ObjectStore& storeOf(uint64_t gen) {
    return (gen & kSourceGen) && sourceStore_ != nullptr ? *sourceStore_ : host_.store();
  }
  // REQUIRES: mu_ held. Whether key waits in the superseded lists to be deleted.
  bool queuedForDeletion(const std::string& key) const;
  // REQUIRES: mu_ held. Whether key is one of this volume's chunk objects a manifest pins.
  bool pinnedKey(const std::string& key) const;
  uint64_t nextGeneration() { return (epoch_ << 32) | (++genCounter_); }
  ChunkRow rowOf(uint64_t index, const ChunkState& st) const;
  void markMeta(uint64_t index, ChunkState& st);
  // REQUIRES: mu_ held. The budget follows: a cached dirty chunk is pinned (whole) and
  // counts in the upload buffer (its charge: whole, or its changed pages with the
  // journal on) unless journaled, then as journaled (whole).
  void setDirty(uint64_t index, ChunkState& st, bool dirty);
  void setJournaled(uint64_t index, ChunkState& st, bool journaled);
  void recount(uint64_t index, int before, ChunkState& st);
  int countedAs(const ChunkState& st) const;
  // REQUIRES: mu_ held. What a chunk counted dirty adds to the upload buffer: its
  // length, or with the journal on its changed pages (at least one).
  uint64_t dirtyCharge(uint64_t index) const;
  // REQUIRES: mu_ held. After its page map changed: its charge follows (not while a
  // segment with its pages is on its way; they count until it is stored).
  void recharge(uint64_t index, ChunkState& st);
  // REQUIRES: mu_ held. Whether the pages of this range are all marked already.
  bool pagesMarked(uint64_t index, uint64_t inChunk, uint64_t length) const;
  // REQUIRES: mu_ held. Pages of the chunk changed since the store had them (journal
  // on only): a range, or all of them.
  void markPages(uint64_t index, uint64_t inChunk, uint64_t length);
  void markAllPages(uint64_t index);
  // REQUIRES: mu_ held. A patched chunk's pages: its page map and those of a segment
  // on its way (still read from the cache file until stored).
  std::vector<uint64_t> patchPages(uint64_t index) const;
  // REQUIRES: mu_ held. The pages of a patched chunk a fill of the whole chunk must not
  // overwrite: patchPages and those being written now (writing_).
  std::vector<uint64_t> keepPages(uint64_t index) const;
  // REQUIRES: mu_ held. Whether a patched chunk's pages cover the range.
  bool patchCovers(uint64_t index, uint64_t inChunk, uint64_t length) const;
  // REQUIRES: mu_ held. Whether a write of this range may patch the chunk: whole pages
  // of a chunk not cached (and not zeroed), with the journal on and open; one never
  // written only once the cache has no room left for it (besides `reserved`, the
  // writer's own).
  bool patchable(uint64_t index, uint64_t inChunk, uint64_t length, const ChunkState& st, uint64_t reserved) const;
  // REQUIRES: mu_ held. The cache a chunk's patch takes follows its pages (counted
  // cached, and pinned unless fenced): none once it is no longer patched. A patched
  // chunk whose pages are all in stored segments becomes kJournal again (its slot in
  // the cache file is punched after the next commit).
  void settlePatch(uint64_t index, ChunkState& st);
  // Writes the chunk from buf to the cache file, but the pages in `skip` (which hold
  // newer writes there).
  Status writeAround(uint64_t index, std::span<const uint8_t> buf, const std::vector<uint64_t>& skip);
  // REQUIRES: mu_ held. Whether a journal segment may hold changes of the chunk newer
  // than its newest object: then zeros need a tombstone to void them.
  bool journalHolds(uint64_t index, const ChunkState& st) const {
    return st.journaling || journalRefs_.count(index) != 0;
  }
  // REQUIRES: mu_ held. The chunk was stored whole above every segment: the segments
  // no other chunk needs are deleted after the next persist.
  void releaseJournalRefs(uint64_t index);
  // What rebuilding a chunk in the journal (Where::kJournal) takes, copied under mu_,
  // and the objects it reads.
  struct JournalCopy {
    uint64_t gen = 0;
    bool zero = false;
    bool patched = false;         // kPatched: may have no pieces
    std::vector<uint64_t> pages;  // kPatched: its pages in the cache file, read last
    std::vector<uint64_t> keep;   // those and the pages writers are writing there now
    std::vector<JournalPiece> pieces;
    std::vector<std::string> keys;
  };
  // REQUIRES: mu_ held. Also holds back the deletion of the objects it names (an upload
  // on its way may supersede them meanwhile) until doneReading.
  JournalCopy journalCopy(uint64_t index);
  void doneReading(const JournalCopy& copy);
  // Reads into buf what planRebuild says: the chunk's object if a page needs it, the
  // pieces no newer one overwrites (one range GET per segment, a few at once), then a
  // patched chunk's pages from the cache file; mu_ not held.
  // upload: for a whole upload, whose store requests let clients' reads go first.
  Status rebuild(uint64_t index, const JournalCopy& copy, std::span<uint8_t> buf, bool upload = false);
  struct RebuildTarget {
    uint64_t index;
    const JournalCopy* copy;
    std::span<uint8_t> buf;  // the whole chunk's room
    // Only these bytes of the chunk are wanted (a small read), rounded out to pages:
    // nothing outside those pages is read, and buf holds garbage there.
    uint64_t from = 0, to = UINT64_MAX;
  };
  // Several chunks at once (an upload of neighbours): one range GET serves the pieces
  // of several where they lie close in a segment (mergeReads).
  Status rebuild(std::span<const RebuildTarget> targets, bool upload = false);
  // The same, also before the journal is open (openJournal applying it).
  Status assemble(std::span<const RebuildTarget> targets, bool upload = false);
  // A chunk an upload stores, as it was when claimed under mu_; it is marked uploading
  // until finishUpload.
  struct UploadClaim {
    uint64_t index = 0;
    uint32_t seq = 0;
    Where where = Where::kZero;
    uint64_t oldGen = 0;
    bool oldZero = false;
    bool zeroNeedsNoObject = false;  // zeros: no object to store
    bool rebuilt = false;            // from the journal (copy)
    JournalCopy copy;
  };
  // REQUIRES: mu_ held; the chunk dirty, not busy, not uploading.
  UploadClaim claimUpload(uint64_t index);
  // REQUIRES: mu_ held. The chunks of index's group that an upload of it (from the
  // journal) takes along: dirty, in the journal, waiting in the queue, not busy, due by
  // turn's waits or draining (UploadTurn); none for a chunk in soloUploads_, nor while
  // the engine stops.
  std::vector<uint64_t> dueNeighbours(uint64_t index, const UploadTurn& turn) const;
  // REQUIRES: lock holds mu_. Records how the claimed upload went (s; the generation
  // stored and whether it was zeros); returns s with its context.
  // crc: of the content stored, if computed.
  Status finishUpload(const UploadClaim& c, Status s, uint64_t newGen, bool isZero, std::optional<uint32_t> crc,
                      std::unique_lock<std::mutex>& lock);
  // REQUIRES: mu_ held. uploadWaitMs of a chunk.
  uint32_t uploadWait(const ChunkState& st, uint32_t idleMs, uint32_t maxAgeMs) const;
  // Reads the chunk's newest generation into buf (at least the chunk's length).
  Status fetch(uint64_t index, uint64_t gen, std::span<uint8_t> buf);
  // Reads bytes [from, to) of the chunk's generation gen into the same place of buf.
  Status fetchRange(uint64_t index, uint64_t gen, uint64_t from, uint64_t to, std::span<uint8_t> buf);
  // This thread's chunk-sized buffer, as long as the chunk.
  std::span<uint8_t> threadChunkBuffer(uint64_t index);
  Status readPiece(uint64_t index, uint64_t inChunk, std::span<uint8_t> out);
  // REQUIRES: mu_ held (by lock); the chunk unverified, kRemote, not busy. Reads its
  // slot in the cache file (busy meanwhile) and caches it again if the bytes match its
  // crc and there is room (evict: made by evicting others, as for a fill; otherwise
  // only room already free); otherwise punches the slot (it is read from the store as
  // any remote chunk). Either way it is no longer unverified. Returns whether cached.
  bool verifyCached(uint64_t index, std::unique_lock<std::mutex>& lock, bool evict = true);
  // REQUIRES: mu_ held. Generation gen of the chunk was just fetched or stored whole,
  // its content's CRC-32C crc: kept if gen is still its newest (a start after a crash
  // verifies the cache with it).
  void noteContent(ChunkState& st, uint64_t gen, uint32_t crc);
  // REQUIRES: mu_ held (by lock), the chunk in the journal and not busy. Rebuilds it,
  // serves the read, and keeps it in the cache if there is room.
  Status readJournaled(uint64_t index, uint64_t inChunk, std::span<uint8_t> out, std::unique_lock<std::mutex>& lock);
  // REQUIRES: mu_ held. At most how many GETs a whole rebuild of the chunk takes: its
  // object and one per segment holding pieces of it (capped at 255).
  uint32_t wholeRebuildGets(uint64_t index) const;
  Status writePiece(uint64_t index, uint64_t inChunk, std::span<const uint8_t> data, bool zero);
  Status zeroWholeChunk(uint64_t index);
  // REQUIRES: mu_ held. Whether one of the `behind` chunks before this one was read
  // from the store whole in the last kStreamWindowMs (a sequential scan: one read long
  // ago is not); noteStoreRead records one, or refreshes the latest.
  bool isStream(uint64_t index, uint64_t behind) const;
  void noteStoreRead(uint64_t index);
  // REQUIRES: mu_ held. Starts fetching the chunks after `from` that a sequential
  // reader will want next into the read-ahead window.
  void scheduleReadAhead(uint64_t from);
  // A read-ahead thread: fetches the chunk into its window entry.
  void readAheadFetch(uint64_t index, uint64_t gen, const std::shared_ptr<ReadWindow::Entry>& entry);
  // REQUIRES: mu_ held (by lock). If the chunk is frozen, copies it to the freeze's
  // copy-on-write file (unlocking meanwhile) and returns true: the caller looks again.
  bool preserveFrozen(uint64_t index, std::unique_lock<std::mutex>& lock);
  // REQUIRES: mu_ held. An upload of seq stored the chunk as gen (0: zeros).
  void frozenUploaded(uint64_t index, uint32_t seq, uint64_t gen);
  struct Freeze;
  // REQUIRES: mu_ held. A frozen chunk neither copied nor stored yet that no upload has
  // under way, taken in turn (threads calling completeFreeze take different ones).
  std::optional<uint64_t> nextPendingFrozen(Freeze& f);
  // REQUIRES: mu_ held. Whether a snapshot's copy of the chunk may be in the store
  // under a generation above its newest one: then even an all-zero chunk needs a
  // tombstone, or a gateway adopting the volume would read the copy as its content.
  bool lateCopyAbove(uint64_t index, uint64_t gen) const {
    if (gen < unknownBelow_.load()) return true;
    auto it = lateCopies_.find(index);
    return it != lateCopies_.end() && it->second > gen;
  }
  // REQUIRES: st.busy set by the caller; mu_ not held.
  Status materialize(uint64_t index, Where where, uint64_t gen, const JournalCopy& copy, bool overwriteAll);

  VolumeHost& host_;
  const VolumeRow row_;
  CacheFile cache_;
  std::optional<WrittenMap> written_;  // set before load (useWrittenMap), then constant
  const uint64_t epoch_;
  std::atomic<uint64_t> genCounter_{0};
  std::atomic<bool> fenced_{false};
  std::atomic<std::chrono::steady_clock::rep> leaseValidUntil_{0};
  std::atomic<int64_t> leaseGraceMs_{0};
  mutable std::mutex leaseMu_;  // a leaf: taken under mu_ too
  std::string leaseError_;      // GUARDED_BY(leaseMu_)

  std::mutex persistMu_;  // one persist() at a time
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ChunkState> states_;               // GUARDED_BY(mu_)
  std::vector<uint64_t> metaPendingList_;        // GUARDED_BY(mu_)
  std::vector<std::string> supersededPending_;   // GUARDED_BY(mu_): deletable after next persist
  std::vector<std::string> supersededReady_;     // GUARDED_BY(mu_): deletable now
  std::vector<uint64_t> punchPending_;           // GUARDED_BY(mu_): evicted, hole not punched yet
  PinCounts pins_;  // GUARDED_BY(mu_): the manifests pinning each chunk object
  uint64_t clockHand_ = 0;                       // GUARDED_BY(mu_)
  uint64_t dirtyChunks_ = 0;                     // GUARDED_BY(mu_): chunks with dirty set
  struct RecentRead {
    uint64_t indexPlusOne = 0;  // 0: none
    uint32_t atMs = 0;          // engineClockMs() when last noted
  };
  std::array<RecentRead, 16> recentMisses_{};    // GUARDED_BY(mu_): recent whole-chunk store reads
  size_t recentMissPos_ = 0;                     // GUARDED_BY(mu_)
  const uint64_t readAheadChunks_;               // chunks fetched ahead of a stream
  ReadWindow window_;                            // GUARDED_BY(mu_)
  std::string lastError_;                        // GUARDED_BY(mu_)
  std::shared_ptr<Freeze> freeze_;  // GUARDED_BY(mu_): the snapshot being taken
  // GUARDED_BY(mu_): index → generation of an object above remoteGen that may exist (a
  // snapshot's copy, or an upload given up on)
  std::unordered_map<uint64_t, uint64_t> lateCopies_;
  // Nonzero after a start that followed a crash, until a collection: any chunk may
  // have an object below this generation (an earlier run's) that nobody recorded.
  std::atomic<uint64_t> unknownBelow_{0};
  const bool journal_;
  // GUARDED_BY(mu_): chunk → bitmap of its pages changed since the store had them.
  std::unordered_map<uint64_t, std::vector<uint64_t>> pages_;
  // GUARDED_BY(mu_): chunk → the pages of it in a journal segment on its way.
  std::unordered_map<uint64_t, std::vector<uint64_t>> journalingPages_;
  // GUARDED_BY(mu_): chunk → [first, end) pages a writer is writing to it, patched: in
  // no page map (or row) until they land, and never overwritten by a fill meanwhile.
  std::unordered_multimap<uint64_t, std::pair<uint64_t, uint64_t>> writing_;
  // Patched chunks whose rows said they had journal pieces (checked by openJournal).
  std::vector<uint64_t> patchedWithPieces_;
  // GUARDED_BY(mu_): chunk → the segments holding its changes (newer than its object);
  // segment → how many chunks still need it.
  std::unordered_map<uint64_t, std::vector<uint64_t>> journalRefs_;
  std::unordered_map<uint64_t, uint32_t> segmentLive_;
  // GUARDED_BY(mu_): chunk → its changes in stored segments newer than its object, in
  // order: what rebuilds it once evicted (a segment whose PUT failed is not here).
  std::unordered_map<uint64_t, std::vector<JournalPiece>> journalPieces_;
  // GUARDED_BY(mu_): objects being read to rebuild a chunk (JournalCopy::keys), held
  // back from deleteSuperseded.
  std::unordered_multiset<std::string> reading_;
  // Set once openJournal has read the segments: chunks in the journal can be rebuilt.
  std::atomic<bool> journalOpen_{false};
  std::atomic<uint64_t> journalWrites_{0}, journalBytes_{0};

  std::atomic<uint64_t> uploadedBytes_{0}, downloadedBytes_{0}, uploads_{0}, uploadErrors_{0};
  std::atomic<uint64_t> readHits_{0}, readMisses_{0}, rangeReads_{0}, zeroReads_{0};
  std::atomic<uint64_t> journalReads_{0};  // range GETs of segments by rebuilds
  // GUARDED_BY(mu_): chunks whose upload together with neighbours failed as one of them
  // could not be rebuilt (an object or segment gone, corrupt): they go alone until
  // stored.
  std::unordered_set<uint64_t> soloUploads_;
  std::atomic<uint64_t> readAheadFetches_{0}, readAheadHits_{0};
  std::atomic<uint64_t> verified_{0}, verifyFailures_{0};  // unverified chunks checked
  std::atomic<uint64_t> hydrationLeft_{0};  // chunks still read from the source
  std::atomic<uint64_t> hydratedBytes_{0};
  std::atomic<bool> sourceReleased_{false};
  ObjectStore* sourceStore_ = nullptr;
  std::atomic<int64_t> sourceCreated_{0};
  std::atomic<uint64_t> changes_{0};
  uint64_t hydrateCursor_ = 0;  // GUARDED_BY(mu_)
  std::atomic<int> snapshotHurry_{0};  // SnapshotHurry guards held
};

}  // namespace ferry
