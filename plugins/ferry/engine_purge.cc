// Cleaning up after a lost gateway (docs/volume-engine.md "A lost gateway's store"):
// another gateway of the account deletes the volumes left in the lost one's store,
// once nothing can write them and nothing reads their snapshots.

#include <ctime>
#include <map>
#include <mutex>

#include "engine.h"
#include "ferry/log.h"
#include "ferry/strings.h"
#include "format.h"
#include "lease.h"

namespace ferry {

namespace {

// The volumes that have objects in the store: the second part of "volumes/<name>/…".
Result<std::map<std::string, std::vector<std::string>>> objectsByVolume(ObjectStore& store) {
  auto listed = store.list("volumes/");
  if (!listed) return listed.status().withContext("list the volumes");
  std::map<std::string, std::vector<std::string>> out;
  for (const ObjectInfo& o : listed.value()) {
    size_t end = o.key.find('/', 8);
    if (end == std::string::npos) continue;
    out[o.key.substr(8, end - 8)].push_back(o.key);
  }
  return out;
}

// Refused while another gateway may still write the volume: its lease is unexpired.
Status checkLeaseLapsed(ObjectStore& store, const std::string& volume) {
  auto body = store.getAll(leaseKey(volume));
  if (!body && body.status().code() == Code::kNotFound) return Status::ok();
  if (!body) return body.status().withContext("read the lease of " + volume);
  auto lease = decodeLease(body.value());
  if (!lease) return lease.status().withContext("the lease of " + volume);
  int64_t left = lease->expiresUnix - static_cast<int64_t>(std::time(nullptr));
  if (left <= 0) return Status::ok();
  return Status::busy("volume " + volume + " is still leased by gateway " + lease->owner + " on " + lease->host +
                      " for " + std::to_string(left) + " s: that gateway may still be running");
}

}  // namespace

Result<Engine::PurgeResult> Engine::purgeStore(const std::string& url) {
  if (url.empty() || url == options_.storeUrl) {
    return Status::invalid("purge-store is for another gateway's store, not this gateway's own");
  }
  auto opened = storeFor(url);
  if (!opened) return opened.status();
  ObjectStore& store = *opened.value();
  auto volumes = objectsByVolume(store);
  if (!volumes) return volumes.status().withContext("purge " + url);
  PurgeResult out;
  for (auto& [name, keys] : volumes.value()) {
    // No snapshot is taken or deleted here meanwhile (one of ours may read from there).
    std::lock_guard snapshots(snapshotMu_);
    Status s = checkLeaseLapsed(store, name);
    auto manifests = s ? readManifests(store, name) : Result<Manifests>(s);
    if (manifests) s = withdrawManifests(store, name, "", manifests.value());
    if (!manifests) s = manifests.status();
    if (!s) {
      out.refused.emplace_back(name, s);
      continue;
    }
    // Everything else under the volume, the header last: a failure leaves a volume a
    // rerun finds again.
    uint64_t deleted = manifests.value().size();
    std::string header = headerKey(name);
    bool hasHeader = false;
    for (const std::string& key : keys) {
      if (key == header) hasHeader = true;
      if (key == header || key.rfind(snapshotsPrefix(name), 0) == 0) continue;
      if (s = store.remove(key); !s) break;
      ++deleted;
    }
    if (s && hasHeader) s = store.remove(header);
    if (!s) {
      out.refused.emplace_back(name, s.withContext("delete " + name));
      continue;
    }
    deleted += hasHeader;
    out.deleted.emplace_back(name, deleted);
    logInfo("purged volume " + name + " from " + url + " (" + std::to_string(deleted) + " objects)");
  }
  return out;
}

}  // namespace ferry
