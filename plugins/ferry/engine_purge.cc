// Cleaning up after a lost gateway (docs/volume-engine.md "A lost gateway's store"):
// another gateway of the account deletes the volumes left in the lost one's store,
// once nothing can write them and nothing reads their snapshots.

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "engine.h"
#include "ferry/log.h"
#include "format.h"
#include "lease.h"

namespace ferry {

namespace {

// A purge holds each volume's lease while it deletes it: a gateway that comes back
// meanwhile finds its copy stale (read-only) rather than serve chunks that are going.
constexpr int kPurgeLeaseSeconds = 24 * 3600;

// The volumes that have objects in the store ("volumes/<name>/…"), with their keys.
Result<std::map<std::string, std::vector<std::string>>> objectsByVolume(ObjectStore& store) {
  const std::string root = volumePrefix("");
  const std::string prefix = root.substr(0, root.size() - 1);  // "volumes/"
  auto listed = store.list(prefix);
  if (!listed) return listed.status().withContext("list the volumes");
  std::map<std::string, std::vector<std::string>> out;
  for (const ObjectInfo& o : listed.value()) {
    size_t end = o.key.find('/', prefix.size());
    if (end == std::string::npos) continue;
    out[o.key.substr(prefix.size(), end - prefix.size())].push_back(o.key);
  }
  return out;
}

}  // namespace

Result<Engine::PurgeResult> Engine::purgeStore(const std::string& url) {
  if (url.empty() || url == options_.storeUrl) {
    return Status::invalid("purge-store is for another gateway's store, not this gateway's own");
  }
  std::lock_guard purging(purgeMu_);
  auto opened = storeFor(url);
  if (!opened) return opened.status();
  ObjectStore& store = *opened.value();
  auto volumes = objectsByVolume(store);
  if (!volumes) return volumes.status().withContext("purge " + url);
  PurgeResult out;

  // First every volume's lease, and the holds of those still being made from a
  // snapshot: a snapshot of this store that only its own volumes read is then free.
  std::map<std::string, std::unique_ptr<LeaseKeeper>> leases;
  // A refused volume is left whole, and not ours: its lease as it was (a gateway that
  // comes back must not find it taken over, and its copy stale).
  std::map<std::string, std::optional<LeaseInfo>> before;
  // Only while the lease is still the purge's: a gateway may have taken it since.
  auto giveBack = [&](const std::string& name, LeaseKeeper& lease) {
    if (Status r = lease.giveBack(before[name]); !r) {
      logError("purge: give back the lease of " + name + ": " + r.toString());
    }
  };
  for (const auto& entry : volumes.value()) {
    const std::string& name = entry.first;
    auto was = readLease(store, name);
    if (!was) {
      out.refused.emplace_back(name, was.status().withContext("purge"));
      continue;
    }
    before[name] = was.value();
    auto lease = std::make_unique<LeaseKeeper>(store, name, gatewayId(), kPurgeLeaseSeconds);
    // A lapsed lease, or ours from a purge cut short: a rerun finishes it.
    Status s = lease->acquire(0, false, "that gateway may still be running").status();
    if (s) {
      s = releaseSourceHold(store, url, name);
      if (!s) giveBack(name, *lease);
    }
    if (!s) {
      out.refused.emplace_back(name, s.withContext("purge"));
      continue;
    }
    leases[name] = std::move(lease);
  }

  for (auto& [name, lease] : leases) {
    Manifests manifests;
    Status s;
    {
      // No snapshot change of ours meanwhile (withdrawManifests' contract).
      std::lock_guard snapshots(snapshotMu_);
      auto read = readManifests(store, name);
      s = read.status();
      if (read) manifests = std::move(read).value();
      if (s) s = withdrawManifests(store, name, "", manifests);
    }
    if (!s) {
      giveBack(name, *lease);
      out.refused.emplace_back(name, s);
      continue;
    }
    // The header first: no gateway adopts what is left of the volume after a failure
    // (a volume created under its name deletes it, deleteLeftovers). Then everything
    // else, the lease last: a rerun finds what is left, and it is ours until then.
    std::set<std::string> withdrawn;
    for (const auto& m : manifests) withdrawn.insert(m.first);
    const std::string header = headerKey(name), leaseObject = leaseKey(name);
    const std::vector<std::string>& keys = volumes.value()[name];
    bool hasHeader = std::find(keys.begin(), keys.end(), header) != keys.end();
    uint64_t deleted = withdrawn.size();
    if (hasHeader) {
      s = store.remove(header);
      if (s) ++deleted;
    }
    for (const std::string& key : keys) {
      if (!s) break;
      if (key == header || key == leaseObject || withdrawn.count(key)) continue;
      if (s = store.remove(key); s) ++deleted;
    }
    if (s) s = store.remove(leaseObject);
    if (!s) {
      out.refused.emplace_back(name, s.withContext("delete " + name));
      continue;
    }
    ++deleted;
    out.deleted.emplace_back(name, deleted);
    logInfo("purged volume " + name + " from " + url + " (" + std::to_string(deleted) + " objects)");
  }
  return out;
}

Status Engine::releaseSourceHold(ObjectStore& store, const std::string& url, const std::string& name) {
  auto body = store.getAll(sourceKey(name));
  if (!body && body.status().code() == Code::kNotFound) return Status::ok();  // not being made from one
  if (!body) return body.status().withContext("read " + sourceKey(name));
  auto source = decodeManifest(body.value());
  if (!source) return source.status().withContext(sourceKey(name));
  auto holder = storeFor(source->sourceStore.empty() ? url : source->sourceStore);
  if (!holder) return holder.status();
  Status s = holder.value()->remove(holdKey(source->volume, source->id, name));
  return s ? s : s.withContext("release snapshot " + source->id + " of " + source->volume);
}

}  // namespace ferry
