#pragma once
// Write-back: a pool of threads that take dirty chunks off a FIFO queue and store them
// as new generations. A transient store failure puts the chunk back at the end of the
// queue and slows the worker down (exponential backoff with full jitter) until the
// store answers again; nothing is dropped.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry {

class Volume;

class Uploader {
 public:
  explicit Uploader(size_t threads) : threadCount_(threads) {}
  ~Uploader() { stop(); }

  void start();
  void stop();
  void enqueue(std::shared_ptr<Volume> volume, uint64_t index);
  size_t depth();
  size_t active() const { return active_.load(); }

 private:
  void run();

  struct Item {
    std::shared_ptr<Volume> volume;
    uint64_t index;
  };
  const size_t threadCount_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;  // GUARDED_BY(mu_)
  bool stopping_ = false;   // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
  std::atomic<size_t> active_{0};
};

}  // namespace ferry
