#include "bandwidth_limiter.h"

#include <algorithm>

namespace ferry {

namespace {
// A full bucket holds one second of the rate: a link idle for a while may send one
// second's worth at once, no more.
constexpr double kBurstSeconds = 1.0;
}  // namespace

void RateLimit::refill(Clock::time_point now) {
  double elapsed = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  if (rate_ == 0) return;
  tokens_ = std::min(tokens_ + elapsed * static_cast<double>(rate_), kBurstSeconds * static_cast<double>(rate_));
}

void RateLimit::setRate(uint64_t bytesPerSecond) {
  std::lock_guard<std::mutex> l(mu_);
  // The same limit again (the agent sets it every few seconds): the debt stands, else
  // each re-apply would let one more transfer through.
  if (bytesPerSecond == rate_) return;
  refill(Clock::now());
  rate_ = bytesPerSecond;
  // A new limit starts with an empty bucket and no debt: the old rate's debt is not
  // carried into a faster one, nor is a slower one's start a burst.
  tokens_ = 0;
  cv_.notify_all();
}

uint64_t RateLimit::rate() const {
  std::lock_guard<std::mutex> l(mu_);
  return rate_;
}

void RateLimit::take(uint64_t bytes) {
  std::unique_lock<std::mutex> l(mu_);
  Clock::time_point started = Clock::now();
  bool waited = false;
  for (;;) {
    Clock::time_point now = Clock::now();
    refill(now);
    if (closed_ || rate_ == 0) break;
    if (tokens_ > 0) {
      tokens_ -= static_cast<double>(bytes);
      break;
    }
    waited = true;
    auto wait = std::chrono::duration<double>((-tokens_ + 1) / static_cast<double>(rate_));
    cv_.wait_for(l, std::chrono::duration_cast<Clock::duration>(wait) + std::chrono::microseconds(100));
  }
  if (waited) {
    waitedMicros_ += std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count();
  }
}

void RateLimit::close() {
  std::lock_guard<std::mutex> l(mu_);
  closed_ = true;
  cv_.notify_all();
}

uint64_t RateLimit::waitedMicros() const {
  std::lock_guard<std::mutex> l(mu_);
  return waitedMicros_;
}

}  // namespace ferry
