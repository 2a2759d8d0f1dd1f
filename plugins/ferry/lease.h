#pragma once
// The volume lease in the object store (volumes/<name>/lease.json): which gateway may
// write the volume, with a fencing epoch that grows at every take-over and forms the
// high half of every chunk generation that gateway writes. A second gateway finds an
// unexpired lease of another owner and refuses; an owner that finds its lease taken
// over stops writing (fenced). See docs/FORMAT.md.

#include <cstdint>
#include <string>
#include <string_view>

#include "ferry/object_store.h"

namespace ferry {

struct LeaseInfo {
  std::string owner;  // gateway id
  std::string host;   // hostname, for the error message a second gateway sees
  uint64_t epoch = 0;
  int64_t expiresUnix = 0;
};

std::string encodeLease(const LeaseInfo& l);
Result<LeaseInfo> decodeLease(std::string_view json);

class LeaseKeeper {
 public:
  LeaseKeeper(ObjectStore& store, std::string volume, std::string gatewayId, int ttlSeconds)
      : store_(store), volume_(std::move(volume)), gatewayId_(std::move(gatewayId)), ttl_(ttlSeconds) {}

  // Takes the lease: kBusy if another gateway holds an unexpired one (unless force),
  // naming it, when its lease expires, and then `advice` (what the caller can do).
  // minEpoch is the last epoch this gateway used; the new epoch is above both.
  Result<uint64_t> acquire(uint64_t minEpoch, bool force,
                           std::string_view advice =
                               "stop that gateway first, or take the volume over with "
                               "takeover=true");
  // Extends the lease; kFenced if another gateway took it over.
  Status renew();
  // Lets another gateway take over at once (clean shutdown, volume deleted).
  Status release();
  uint64_t epoch() const { return epoch_; }

 private:
  ObjectStore& store_;
  const std::string volume_;
  const std::string gatewayId_;
  const int ttl_;
  uint64_t epoch_ = 0;
};

}  // namespace ferry
