#include "store_priority.h"

namespace ferry {

void StorePriority::Client::end() {
  StorePriority* owner = std::exchange(owner_, nullptr);
  if (!owner) return;
  {
    std::lock_guard lock(owner->mu_);
    --owner->clients_;
    owner->lastClientEnd_ = Clock::now();
  }
  owner->cv_.notify_all();  // with no quiet time, the uploads go on now
}

StorePriority::Upload::~Upload() {
  if (!owner_) return;
  {
    std::lock_guard lock(owner_->mu_);
    --owner_->uploads_;
  }
  owner_->cv_.notify_all();  // (one waiter may be asking urgent() and miss it)
}

StorePriority::Client StorePriority::client() {
  std::lock_guard lock(mu_);
  ++clients_;
  return Client(this);
}

bool StorePriority::clientsActive(Clock::time_point now) const {
  return clients_ > 0 || now - lastClientEnd_ < quiet_;
}

StorePriority::Upload StorePriority::upload(const std::function<bool()>& go) {
  std::unique_lock lock(mu_);
  const Clock::time_point start = Clock::now();
  bool waited = false;
  while (uploads_ >= widthUnderLoad_ && clientsActive(Clock::now())) {
    // urgent() looks at the engine's counters: not under this lock.
    lock.unlock();
    const bool urgent = urgent_() || (go && go());
    lock.lock();
    if (urgent) break;
    if (!waited) ++waiting_;
    waited = true;
    cv_.wait_for(lock, std::chrono::milliseconds(10));
  }
  if (waited) {
    --waiting_;
    ++heldBack_;
    heldBackFor_ += Clock::now() - start;
  }
  ++uploads_;
  return Upload(this);
}

size_t StorePriority::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}

uint64_t StorePriority::heldBack() const {
  std::lock_guard lock(mu_);
  return heldBack_;
}

uint64_t StorePriority::heldBackMs() const {
  std::lock_guard lock(mu_);
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(heldBackFor_).count());
}

}  // namespace ferry
