#include "cache_budget.h"

namespace ferry {

bool CacheBudget::tryReserveCached(uint64_t n) {
  uint64_t cur = cached_.load();
  while (cur + n <= cacheLimit_) {
    if (cached_.compare_exchange_weak(cur, cur + n)) return true;
  }
  return false;
}

void CacheBudget::releaseCached(uint64_t n) {
  cached_ -= n;
  wake();
}

void CacheBudget::releaseDirty(uint64_t n) {
  dirty_ -= n;
  wake();
}

void CacheBudget::wake() {
  {
    std::lock_guard lock(mu_);
    ++releases_;
  }
  cv_.notify_all();
}

void CacheBudget::waitForDirtyRoom(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return dirty_.load() < dirtyLimit_; });
}

void CacheBudget::waitForRelease(uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return releases_ != seen; });
}

uint64_t CacheBudget::releases() {
  std::lock_guard lock(mu_);
  return releases_;
}

}  // namespace ferry
