#pragma once
// A fixed pool of threads running queued tasks, for background work that may be
// dropped when the pool is busy (read-ahead): submit() refuses rather than queue
// without bound.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry {

class TaskPool {
 public:
  TaskPool(size_t threads, size_t maxQueued) : threadCount_(threads), maxQueued_(maxQueued) {}
  ~TaskPool() { stop(); }
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  void start();
  // Runs what is already running to its end, drops what is queued, joins the threads.
  void stop();
  // False when the queue is full or the pool is not running; the task is not run.
  bool submit(std::function<void()> task);

 private:
  void run();

  const size_t threadCount_;
  const size_t maxQueued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // GUARDED_BY(mu_)
  bool running_ = false;                     // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace ferry
