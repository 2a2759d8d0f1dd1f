#pragma once
// The gateway's bandwidth limits to the object store (upload: chunk PUTs, download:
// chunk GETs), shared by every volume, as AWS's volume gateway has them. A limit is an
// average rate in bytes per second (0: none); one transfer may exceed it, and the
// transfers after it wait until the average is back under the limit. Leases and volume
// headers are not limited: they are small and a lease must not expire behind a queue
// of chunks.
//
// Set through the admin interface ({"op":"limits"}), by the agent from the provider's
// schedule, or with upload-limit= / download-limit= on the nbdkit command line.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace ferry {

// One direction: a token bucket that may go into debt by one transfer.
class RateLimit {
 public:
  // bytesPerSecond 0 = unlimited. Waiters see a new rate at once.
  void setRate(uint64_t bytesPerSecond);
  uint64_t rate() const;
  // Waits until bytes may go (at once when unlimited, or while tokens remain), then
  // takes them. After close() it never waits.
  void take(uint64_t bytes);
  void close();
  // Total time callers spent waiting, in microseconds.
  uint64_t waitedMicros() const;

 private:
  using Clock = std::chrono::steady_clock;
  void refill(Clock::time_point now);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t rate_ = 0;
  double tokens_ = 0;  // bytes; negative = debt the next callers wait out
  Clock::time_point last_ = Clock::now();
  bool closed_ = false;
  uint64_t waitedMicros_ = 0;
};

struct BandwidthLimits {
  uint64_t upload = 0, download = 0;  // bytes per second, 0 = unlimited
};

class BandwidthLimiter {
 public:
  void set(BandwidthLimits limits) {
    up_.setRate(limits.upload);
    down_.setRate(limits.download);
  }
  BandwidthLimits get() const { return {up_.rate(), down_.rate()}; }
  void upload(uint64_t bytes) { up_.take(bytes); }
  void download(uint64_t bytes) { down_.take(bytes); }
  // Shutting down: nothing waits any more.
  void close() {
    up_.close();
    down_.close();
  }
  uint64_t uploadWaitedMicros() const { return up_.waitedMicros(); }
  uint64_t downloadWaitedMicros() const { return down_.waitedMicros(); }

 private:
  RateLimit up_, down_;
};

}  // namespace ferry
