#pragma once
// Write-back: a pool of threads that take dirty chunks off a FIFO queue and store them
// as new generations. A transient store failure puts the chunk back at the end of the
// queue and slows the worker down (exponential backoff with full jitter) until the
// store answers again; nothing is dropped.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <queue>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry {

class Volume;

class Uploader {
 public:
  // A chunk goes up once no write has touched it for `idle`, or `maxAge` after it
  // became dirty, whichever comes first: a burst of writes to it costs one upload, not
  // one per write. hurry() returning true (dirty bytes high, a checkpoint or shutdown
  // waiting) lifts the wait.
  Uploader(size_t threads, std::chrono::milliseconds idle, std::chrono::milliseconds maxAge,
           std::function<bool()> hurry)
      : threadCount_(threads), delay_(idle), maxAge_(maxAge), hurry_(std::move(hurry)) {}
  ~Uploader() { stop(); }

  void start();
  void stop();
  void enqueue(std::shared_ptr<Volume> volume, uint64_t index);
  // Wakes waiting workers to look at hurry() again.
  void poke() { cv_.notify_all(); }
  size_t depth();
  size_t active() const { return active_.load(); }

 private:
  void run();

  struct Item {
    std::shared_ptr<Volume> volume;
    uint64_t index;
    std::chrono::steady_clock::time_point readyAt;
    bool operator<(const Item& o) const { return readyAt > o.readyAt; }  // min-heap
  };
  const size_t threadCount_;
  const std::chrono::milliseconds delay_;
  const std::chrono::milliseconds maxAge_;
  const std::function<bool()> hurry_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Item> queue_;  // GUARDED_BY(mu_), earliest readyAt on top
  bool stopping_ = false;   // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
  std::atomic<size_t> active_{0};
};

}  // namespace ferry
