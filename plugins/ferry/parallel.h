#pragma once
// Runs a handful of independent blocking tasks (store requests) side by side on
// short-lived threads: for work whose latency is the store's round trips, not CPU.
// Exceptions become failures (catchAll), so that a caller holding claims (a chunk
// marked uploading) always gets to release them.

#include <cstddef>
#include <functional>

#include "ferry/status.h"

namespace ferry {

// op(), or the failure an exception from it stands for: an I/O error (ENOMEM for
// std::bad_alloc).
Status catchAll(const std::function<Status()>& op);

// Runs task(0) … task(n - 1) on up to width threads, the caller's included. Once a
// task fails, those not started yet are skipped. Returns the failure of the lowest
// index among those run, or ok. A task that throws fails as catchAll says. Per-thread
// state (a StoreDeadline) is not carried to the others.
Status runParallel(size_t n, size_t width, const std::function<Status(size_t)>& task);

}  // namespace ferry
