#pragma once
// The volume lease in the object store (volumes/<name>/lease.json): which gateway may
// write the volume, with a fencing epoch that grows at every take-over and forms the
// high half of every chunk generation that gateway writes. A second gateway finds an
// unexpired lease of another owner and refuses; an owner that finds its lease taken
// over stops writing (fenced). Every write of the lease is conditional on the version
// last read (ObjectStore::putIfTag): a renewal cannot overwrite a takeover that came
// between its read and its write, and of two gateways starting at once only one
// wins. See docs/FORMAT.md.
//
// Timing: an owner renews every ttl/4, and changes the store (uploads, deletes) only
// until ttl/2 after the start of its last confirmation (validUntil). A gateway that
// takes another's lease it did not release (live with force, or expired by a clock
// that may run ahead) waits 3/4 of the owner's ttl (recorded in the lease), confirms
// it still holds it, and only then reads the volume: by then the old owner, whatever
// it knows, changes nothing more.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "ferry/object_store.h"

namespace ferry {

struct LeaseInfo {
  std::string owner;  // gateway id
  std::string host;   // hostname, for the error message a second gateway sees
  uint64_t epoch = 0;
  int64_t expiresUnix = 0;
  int ttlSeconds = 0;  // the owner's lease-ttl (0: not recorded, from before it was)
  // While the owner waits out the gateway it takes the lease over from: that one's ttl
  // (0 otherwise). An owner restarting before its wait was done waits again.
  int waitingOutTtl = 0;
};

std::string encodeLease(const LeaseInfo& l);
// The volume's lease in the store; empty if it has none.
Result<std::optional<LeaseInfo>> readLease(ObjectStore& store, const std::string& volume);
Result<LeaseInfo> decodeLease(std::string_view json);

class LeaseKeeper {
 public:
  LeaseKeeper(ObjectStore& store, std::string volume, std::string gatewayId, int ttlSeconds)
      : store_(store), volume_(std::move(volume)), gatewayId_(std::move(gatewayId)), ttl_(ttlSeconds) {}

  // Takes the lease: kBusy if another gateway holds an unexpired one (unless force),
  // naming it, when its lease expires, and then `advice` (what the caller can do).
  // minEpoch is the last epoch this gateway used; the new epoch is above both. Taking
  // another gateway's unreleased lease waits out its owner (takeoverWait).
  Result<uint64_t> acquire(uint64_t minEpoch, bool force,
                           std::string_view advice =
                               "stop that gateway first, or take the volume over with "
                               "takeover=true");
  // Extends the lease; kFenced if another gateway took it over.
  Status renew();
  // Lets another gateway take over at once (clean shutdown, volume deleted).
  Status release();
  // Puts the lease back as it was before acquire (none: removes it), as a purge that
  // refuses a volume does. Like release, only while the lease is still this keeper's
  // (the write is conditional; the removal is a plain DELETE).
  Status giveBack(const std::optional<LeaseInfo>& was);
  // No renewal writes the lease from now on (the volume is being deleted, or an
  // adoption's first lease is done with); waits for one under way.
  void retire();
  bool retired() {
    std::lock_guard lock(renewMu_);
    return retired_;
  }
  uint64_t epoch() const { return epoch_; }
  const std::string& volume() const { return volume_; }
  // Until when this gateway may change the volume in the store (see above).
  std::chrono::steady_clock::time_point validUntil() const {
    return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(validUntil_.load()));
  }
  std::chrono::milliseconds renewInterval() const { return std::chrono::milliseconds(ttl_ * 1000 / 4); }
  // How long after validUntil a store request begun before it may still run: ttl/8,
  // half the ttl/4 a taker waits beyond it (takeoverWait), the rest left for clocks
  // and a server finishing a request the client gave up on.
  std::chrono::milliseconds requestGrace() const { return std::chrono::milliseconds(ttl_ * 1000 / 8); }
  // How long taking another owner's lease waits: 3/4 of its ttl (this gateway's own if
  // unknown), at most kMaxTtlSeconds' worth (a purge's long lease writes no data).
  std::chrono::milliseconds takeoverWait(int ownerTtl) const {
    int ttl = std::min(ownerTtl > 0 ? ownerTtl : ttl_, kMaxTtlSeconds);
    return std::chrono::milliseconds(ttl * 1000 * 3 / 4);
  }
  static constexpr int kMaxTtlSeconds = 120;  // the longest lease-ttl a gateway may use

 private:
  ObjectStore& store_;
  const std::string volume_;
  const std::string gatewayId_;
  const int ttl_;
  // The lease is confirmed ours as of started (when the read that showed it began).
  void confirmed(std::chrono::steady_clock::time_point started);
  // Reads the lease back: ours at mine, or kBusy naming the gateway that has it.
  Status checkOurs(const LeaseInfo& mine);
  // kBusy for a conditional write of mine that lost, naming the gateway that won.
  Status lostWhileStarting(const LeaseInfo& mine);
  // OK if the lease (as read) is this keeper's, else kFenced naming its owner.
  Status stillOurs(std::string_view lease) const;
  // If the lease is still this keeper's, writes `with` over it (none: removes it).
  Status replaceIfOurs(const std::optional<LeaseInfo>& with);

  uint64_t epoch_ = 0;
  std::atomic<std::chrono::steady_clock::rep> validUntil_{0};
  std::mutex renewMu_;    // one renewal at a time; retire() waits for it
  bool retired_ = false;  // GUARDED_BY(renewMu_)
};

}  // namespace ferry
