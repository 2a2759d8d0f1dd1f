// What every object store shares: the copy through this process.

#include <algorithm>

#include "ferry/object_store.h"

namespace ferry {

namespace {
thread_local StoreDeadline::Clock::time_point tDeadline = StoreDeadline::Clock::time_point::max();
}  // namespace

StoreDeadline::StoreDeadline(Clock::time_point until) : previous_(tDeadline) {
  tDeadline = std::min(tDeadline, until);
}

StoreDeadline::~StoreDeadline() {
  tDeadline = previous_;
}

StoreDeadline::Clock::time_point StoreDeadline::current() {
  return tDeadline;
}

Status ObjectStore::copyFrom(ObjectStore& source, const std::string& sourceKey, const std::string& key,
                             bool* serverSide) {
  if (serverSide) *serverSide = false;
  auto body = source.getAll(sourceKey);
  if (!body) return body.status().withContext("copy " + sourceKey);
  return put(key, bytesOf(body.value()));
}

}  // namespace ferry
