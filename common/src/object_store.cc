// What every object store shares: the copy through this process.

#include "ferry/object_store.h"

namespace ferry {

Status ObjectStore::copyFrom(ObjectStore& source, const std::string& sourceKey, const std::string& key,
                             bool* serverSide) {
  if (serverSide) *serverSide = false;
  auto body = source.getAll(sourceKey);
  if (!body) return body.status().withContext("copy " + sourceKey);
  return put(key, bytesOf(body.value()));
}

}  // namespace ferry
