#include "uploader.h"

#include "ferry/log.h"

#include <algorithm>
#include <random>

#include "volume.h"

namespace ferry {

void Uploader::start() {
  std::lock_guard lock(mu_);
  stopping_ = false;
  for (size_t i = 0; i < threadCount_; ++i) threads_.emplace_back([this] { run(); });
}

void Uploader::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Uploader::enqueue(std::shared_ptr<Volume> volume, uint64_t index) {
  {
    std::lock_guard lock(mu_);
    queue_.push({std::move(volume), index, std::chrono::steady_clock::now() + std::min(delay_, maxAge_)});
  }
  cv_.notify_one();
}

size_t Uploader::depth() {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void Uploader::run() {
  std::vector<uint8_t> buf;
  std::minstd_rand rng(std::random_device{}());
  int failures = 0;
  for (;;) {
    Item item;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      auto now = std::chrono::steady_clock::now();
      bool hurry = hurry_();
      auto readyAt = queue_.top().readyAt;
      if (readyAt > now && !hurry) {
        // Not due yet: look again when it is, or soon if pressure builds.
        cv_.wait_until(lock, std::min(readyAt, now + std::chrono::milliseconds(50)));
        continue;
      }
      item = queue_.top();
      queue_.pop();
      if (!hurry) {
        // Still being written: leave it until it settles (or grows too old).
        lock.unlock();
        uint32_t wait = item.volume->uploadWaitMs(item.index, static_cast<uint32_t>(delay_.count()),
                                                  static_cast<uint32_t>(maxAge_.count()));
        lock.lock();
        if (wait > 0) {
          item.readyAt = now + std::chrono::milliseconds(wait);
          queue_.push(std::move(item));
          continue;
        }
      }
    }
    ++active_;
    Status s = item.volume->uploadChunk(
        item.index, buf, {static_cast<uint32_t>(delay_.count()), static_cast<uint32_t>(maxAge_.count())});
    --active_;
    if (s) {
      failures = 0;
      continue;
    }
    if (s.code() == Code::kFenced) continue;  // the volume stopped writing; drop it
    item.volume->noteError(s.toString());
    if (failures == 0 || failures % 20 == 0) logError(s.toString() + " (will retry)");
    ++failures;
    item.volume->requeue(item.index);
    // Full jitter: sleep a random time up to min(cap, base * 2^failures).
    int64_t ceiling = std::min<int64_t>(10000, int64_t{100} << std::min(failures, 7));
    auto pause = std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(ceiling / 4, ceiling)(rng));
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, pause, [&] { return stopping_; });
    if (stopping_) return;
  }
}

}  // namespace ferry
