#include "task_pool.h"

namespace ferry {

void TaskPool::start() {
  std::lock_guard lock(mu_);
  if (running_ || !threads_.empty()) return;
  running_ = true;
  for (size_t i = 0; i < threadCount_; ++i) threads_.emplace_back([this] { run(); });
}

void TaskPool::stop() {
  {
    std::lock_guard lock(mu_);
    running_ = false;
    queue_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

bool TaskPool::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (!running_ || queue_.size() >= maxQueued_) return false;
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void TaskPool::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return !running_ || !queue_.empty(); });
    if (!running_) return;
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

}  // namespace ferry
