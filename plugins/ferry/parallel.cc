#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace ferry {

Status catchAll(const std::function<Status()>& op) {
  try {
    return op();
  } catch (const std::bad_alloc&) {
    return Status::ioError("out of memory", ENOMEM);
  } catch (const std::exception& e) {
    return Status::ioError(e.what());
  } catch (...) {
    return Status::ioError("unknown exception");
  }
}

Status runParallel(size_t n, size_t width, const std::function<Status(size_t)>& task) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  size_t failedAt = n;
  Status failure;
  auto work = [&] {
    for (size_t i; !failed.load() && (i = next.fetch_add(1)) < n;) {
      Status s = catchAll([&] { return task(i); });
      if (s) continue;
      failed = true;
      std::lock_guard lock(mu);
      if (i < failedAt) {
        failedAt = i;
        failure = std::move(s);
      }
    }
  };
  std::vector<std::thread> threads;
  const size_t extra = std::min(width, n) > 1 ? std::min(width, n) - 1 : 0;
  for (size_t t = 0; t < extra; ++t) {
    try {
      threads.emplace_back(work);
    } catch (const std::exception&) {
      break;  // no thread to be had (system_error, bad_alloc): fewer do the work
    }
  }
  work();
  for (std::thread& t : threads) t.join();
  return failedAt == n ? Status::ok() : failure;
}

}  // namespace ferry
