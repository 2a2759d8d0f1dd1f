// The engine's snapshots: manifests in the store that pin chunk generations
// (docs/FORMAT.md "Snapshots").

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <thread>

#include "engine.h"
#include "ferry/log.h"
#include "ferry/strings.h"

namespace ferry {

Status Engine::loadSnapshotPins(Volume& v) {
  auto listed = store_->list(snapshotsPrefix(v.name()));
  if (!listed) return listed.status().withContext("list the snapshots of volume " + v.name());
  for (const ObjectInfo& o : listed.value()) {
    auto body = store_->getAll(o.key);
    if (!body && body.status().code() == Code::kNotFound) continue;  // deleted meanwhile
    if (!body) return body.status().withContext("read snapshot manifest " + o.key);
    auto m = decodeManifest(body.value());
    // Not knowing what a snapshot holds, the gateway could delete what it needs: stop.
    if (!m) return m.status().withContext(o.key);
    v.pin(m.value().chunks);
  }
  return Status::ok();
}

Result<SnapshotManifest> Engine::snapshot(const std::string& name, const std::string& id,
                                          std::chrono::seconds timeout, Volume::FreezeStats* freeze) {
  if (Status s = checkVolumeName(id); !s) return Status::invalid("snapshot id: " + s.message());
  auto v = find(name);
  if (!v) return Status::notFound("no volume named " + name);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // A manifest names only the volume's own objects: chunks still read from a source
  // snapshot are copied first, before anything is locked (other snapshots, deletes and
  // collections go on meanwhile). The snapshot's point in time is the freeze below,
  // after the copy; copying does not change what a chunk reads.
  if (v->hydrationLeft() > 0) {
    if (Status s = hydrateRest(*v, deadline); !s) return s.withContext("snapshot " + id);
  }
  std::lock_guard guard(snapshotMu_);
  std::string key = snapshotKey(name, id);
  auto existing = store_->getAll(key);
  if (existing) return decodeManifest(existing.value());
  if (existing.status().code() != Code::kNotFound) return existing.status().withContext("snapshot " + id);
  // The copy-on-write freeze: the snapshot's content is the volume's at this moment.
  std::string cow = cowPath(name);
  auto frozen = v->beginFreeze(cow);
  if (!frozen) return frozen.status().withContext("snapshot " + id);
  SnapshotManifest m;
  m.volume = name;
  m.id = id;
  m.size = v->size();
  m.chunkSize = v->chunkSize();
  m.createdUnix = static_cast<int64_t>(::time(nullptr));
  Status s;
  {
    // A few threads store the frozen chunks: the copies of those rewritten since the
    // freeze, and the others as they are, before clients' reads. Only this volume
    // hurries: other volumes' uploads keep their upload-delay.
    Volume::SnapshotHurry hurry(*v);
    std::vector<std::thread> helpers;
    std::vector<Status> results(kSnapshotUploaders);
    for (size_t i = 1; i < results.size(); ++i)
      helpers.emplace_back([&, i] { results[i] = v->completeFreeze(deadline); });
    results[0] = v->completeFreeze(deadline);
    for (std::thread& t : helpers) t.join();
    for (const Status& r : results) {
      if (!r && s) s = r;
    }
  }
  ::unlink(cow.c_str());
  // The copies a failed snapshot stored go only under a confirmed lease: a gateway
  // that took the volume over may read one as a chunk's newest object (a collection
  // of its own finds those it does not).
  auto dropCopies = [&](const std::vector<std::string>& copies) {
    for (const std::string& k : copies) {
      bool lapsed = false;
      if (!v->removeUnderLease(k, &lapsed) && lapsed) return;
    }
  };
  if (!s) {
    dropCopies(v->abortFreeze());
    return s.withContext("snapshot " + id);
  }
  Volume::FreezeStats fs;
  m.chunks = v->endFreeze(&fs);
  s = v->underLease([&] { return store_->put(key, bytesOf(encodeManifest(m))); });
  if (!s) {
    dropCopies(v->unpin(m.chunks));
    return s.withContext("write snapshot manifest " + key);
  }
  logInfo("volume " + name + ": snapshot " + id + " of " + std::to_string(m.chunks.size()) +
          " stored chunks; writes paused " + std::to_string(fs.pauseMicros) + " us, " +
          std::to_string(fs.frozen) + " dirty chunks frozen, " + std::to_string(fs.copied) +
          " copied before a rewrite");
  if (freeze) *freeze = fs;
  return m;
}

Status Engine::deleteSnapshot(const std::string& name, const std::string& id) {
  if (Status s = checkVolumeName(id); !s) return Status::invalid("snapshot id: " + s.message());
  auto v = find(name);
  if (v) {
    if (Status s = v->leaseCheck(); !s) return s.withContext("delete snapshot " + id);
  }
  std::lock_guard guard(snapshotMu_);
  std::string key = snapshotKey(name, id);
  auto body = store_->getAll(key);
  if (!body && body.status().code() == Code::kNotFound) return Status::ok();  // gone already
  if (!body) return body.status().withContext("snapshot " + id);
  auto m = decodeManifest(body.value());
  if (!m) return m.status().withContext(key);
  // Not under the lease's deadline (checked above): a withdrawal that fails puts the
  // manifests back, and that must not be cut short with them gone.
  if (Status s = withdrawManifests(*store_, name, id, {{key, body.value()}}); !s) return s.withContext("delete snapshot " + id);
  if (!v) return Status::ok();
  size_t removed = 0;
  for (const std::string& k : v->unpin(m.value().chunks)) {
    // Under the volume's lease: past it, the rest are left for a collection to find.
    bool lapsed = false;
    if (v->removeUnderLease(k, &lapsed)) {
      ++removed;
    } else if (lapsed) {
      break;
    }
  }
  logInfo("volume " + name + ": snapshot " + id + " deleted, " + std::to_string(removed) +
          " chunk objects only it kept removed");
  return Status::ok();
}

namespace {

bool isRecoveryPoint(const std::string& id) { return id.rfind(Engine::kRecoveryPrefix, 0) == 0; }

// The ids of the manifests of volume in store, in key order.
Result<std::vector<std::string>> manifestIds(ObjectStore& store, const std::string& volume) {
  std::string prefix = snapshotsPrefix(volume);
  auto listed = store.list(prefix);
  if (!listed) return listed.status().withContext("list the snapshots of " + volume);
  std::vector<std::string> ids;
  for (const ObjectInfo& o : listed.value()) {
    std::string tail = o.key.substr(prefix.size());
    if (tail.size() > 5 && tail.compare(tail.size() - 5, 5, ".json") == 0) ids.push_back(tail.substr(0, tail.size() - 5));
  }
  return ids;
}

}  // namespace

Result<Engine::Manifests> Engine::readManifests(ObjectStore& store, const std::string& name) {
  auto ids = manifestIds(store, name);
  if (!ids) return ids.status();
  Manifests out;
  for (const std::string& id : ids.value()) {
    std::string key = snapshotKey(name, id);
    auto body = store.getAll(key);
    if (!body && body.status().code() == Code::kNotFound) continue;  // deleted meanwhile
    if (!body) return body.status().withContext(key);
    out.emplace_back(key, std::move(body).value());
  }
  return out;
}

Status Engine::withdrawManifests(ObjectStore& store, const std::string& name, const std::string& id,
                                 const Manifests& manifests) {
  auto refusal = [&](const Result<std::vector<std::string>>& holding) {
    if (!holding) return holding.status();
    if (!id.empty()) {
      return Status::busy("snapshot " + id + " of " + name + " is the source of volume(s) " +
                          join(holding.value(), ", ") + " still being hydrated; delete it once they are done");
    }
    return Status::busy("volume " + name + " has snapshots that volume(s) " + join(holding.value(), ", ") +
                        " are still being made from; delete it once they are hydrated");
  };
  // Held already: refused before anything changes.
  auto held = holders(store, name, id);
  if (!held || !held.value().empty()) return refusal(held);
  // The manifests first: a crash after them leaks chunk objects (found by a
  // collection), never leaves a manifest that points at deleted ones.
  Manifests removed;
  for (const auto& manifest : manifests) {
    if (Status s = store.remove(manifest.first); !s) {
      restoreManifests(store, removed);
      return s.withContext("delete snapshot manifest " + manifest.first);
    }
    removed.push_back(manifest);
  }
  // A volume being made from one of them writes its hold before it reads the
  // manifest: if one appeared meanwhile, it may have read it. Put them back.
  auto holding = holders(store, name, id);
  if (!holding || !holding.value().empty()) {
    restoreManifests(store, removed);
    return refusal(holding);
  }
  return Status::ok();
}

void Engine::restoreManifests(ObjectStore& store, const Manifests& manifests) {
  for (const auto& [key, body] : manifests) {
    Status s = store.put(key, bytesOf(body));
    if (!s) logError("could not put snapshot manifest " + key + " back: " + s.toString());
  }
}

Result<std::vector<std::string>> Engine::listSnapshots(const std::string& name) {
  if (!find(name)) return Status::notFound("no volume named " + name);
  auto ids = manifestIds(*store_, name);
  if (!ids) return ids.status();
  std::erase_if(ids.value(), isRecoveryPoint);
  return ids;
}

Result<std::vector<std::string>> Engine::listRecoveryPoints(const std::string& name, ObjectStore* store) {
  auto ids = manifestIds(store ? *store : *store_, name);
  if (!ids) return ids.status();
  // Fixed-width hex times after the prefix: key order is age order.
  std::erase_if(ids.value(), [](const std::string& id) { return !isRecoveryPoint(id); });
  return ids;
}

Result<SnapshotManifest> Engine::takeRecoveryPoint(const std::string& name) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  char id[40];
  std::snprintf(id, sizeof id, "%s%016llx", kRecoveryPrefix, static_cast<unsigned long long>(ms.count()));
  auto m = snapshot(name, id, std::chrono::seconds(300));
  if (m) pruneRecoveryPoints(name);
  return m;
}

void Engine::pruneRecoveryPoints(const std::string& name) {
  auto ids = listRecoveryPoints(name);
  if (!ids || ids.value().size() < 2) return;
  // All but the newest; one a volume is still being made from (busy) stays, and goes
  // at a later prune.
  for (size_t i = 0; i + 1 < ids.value().size(); ++i) {
    const std::string& old = ids.value()[i];
    if (Status s = deleteSnapshot(name, old); !s && s.code() != Code::kBusy) {
      logError("volume " + name + ": delete recovery point " + old + ": " + s.toString());
    }
  }
}

void Engine::maintenanceLoop() {
  using Clock = std::chrono::steady_clock;
  const auto recoveryEvery = std::chrono::seconds(options_.recoveryIntervalSeconds);
  const auto collectEvery = std::chrono::seconds(options_.collectIntervalSeconds);
  const auto never = Clock::time_point::max();
  auto nextRecovery = recoveryEvery.count() > 0 ? Clock::now() + recoveryEvery : never;
  // After a crash, the first soon: until then zeros over any chunk cost a tombstone
  // (Volume::objectsUnknownBelow).
  auto firstCollect = collectSoon_ ? std::min<Clock::duration>(collectEvery, std::chrono::seconds(10)) : collectEvery;
  auto nextCollect = collectEvery.count() > 0 ? Clock::now() + firstCollect : never;
  std::unique_lock lock(bgMu_);
  while (!bgStop_) {
    if (bgCv_.wait_until(lock, std::min(nextRecovery, nextCollect), [&] { return bgStop_; })) break;
    auto now = Clock::now();
    bool recover = now >= nextRecovery, sweep = now >= nextCollect;
    if (!recover && !sweep) continue;
    if (recover) nextRecovery = now + recoveryEvery;
    if (sweep) nextCollect = now + collectEvery;
    lock.unlock();
    for (auto& v : volumes()) {
      if (stopping_) break;
      if (v->hydrating() || v->fenced()) continue;
      if (recover) recoveryPointIfChanged(*v);
      if (sweep && !stopping_) {
        if (auto c = collect(v->name()); !c && c.status().code() != Code::kNotFound) {
          logError("volume " + v->name() + ": collection: " + c.status().toString());
        }
      }
    }
    lock.lock();
  }
}

void Engine::recoveryPointIfChanged(Volume& v) {
  uint64_t changes = v.changes();
  auto mark = recoveryMarks_.find(v.name());
  if (mark != recoveryMarks_.end() && mark->second == changes) {
    pruneRecoveryPoints(v.name());  // nothing new: only the older points a clone held
    return;
  }
  if (auto m = takeRecoveryPoint(v.name()); m) {
    recoveryMarks_[v.name()] = changes;
  } else if (!stopping_) {
    logError("volume " + v.name() + ": recovery point: " + m.status().toString());
  }
}

Result<Engine::CollectStats> Engine::collect(const std::string& name) {
  auto v = find(name);
  if (!v) return Status::notFound("no volume named " + name);
  if (Status s = v->leaseCheck(); !s) return s.withContext("collect " + name);
  // Pins do not change meanwhile: no snapshot is taken or deleted during a collection.
  std::lock_guard guard(snapshotMu_);
  // A hold whose manifest is gone (a crash while a delete put it back): the pins of
  // that snapshot are unknown here, and a volume still reads its objects. Refuse.
  auto holdList = store_->list(holdsPrefix(name));
  if (!holdList) return holdList.status().withContext("collect " + name);
  for (const ObjectInfo& o : holdList.value()) {
    std::string rest = o.key.substr(holdsPrefix(name).size());
    std::string snapshotId = rest.substr(0, rest.find('/'));
    auto manifest = store_->getAll(snapshotKey(name, snapshotId));
    if (!manifest && manifest.status().code() == Code::kNotFound) {
      return Status::busy("volume " + name + ": " + o.key + " holds snapshot " + snapshotId +
                          ", whose manifest is gone; not collecting until that volume is hydrated or deleted");
    }
    if (!manifest) return manifest.status().withContext("collect " + name);
  }
  // Uploads that start from now on make generations above the floor: never touched.
  uint64_t floor = v->generationFloor();
  std::string prefix = chunksPrefix(name);
  auto listed = store_->list(prefix);
  if (!listed) return listed.status().withContext("collect " + name);
  CollectStats st;
  auto publish = [&] {
    std::lock_guard<std::mutex> l(collectMu_);
    collectProgress_[name] = st;
  };
  for (const ObjectInfo& o : listed.value()) {
    ++st.listed;
    auto key = parseChunkKey(std::string_view(o.key).substr(prefix.size()));
    bool lapsed = false;
    if (!key || key->generation > floor || !v->collectable(key->index, key->generation)) {
      ++st.kept;
    } else if (Status s = v->removeUnderLease(o.key, &lapsed); s) {
      ++st.deleted;
    } else {
      ++st.errors;
      if (lapsed) {
        // The lease ran out meanwhile: the next collection finds the rest.
        publish();
        return s.withContext("collect " + name + " (stopped after " + std::to_string(st.deleted) + " deletes)");
      }
    }
    if (st.listed % 256 == 0) publish();
  }
  publish();
  // Every object of an earlier run that no row names is gone now (a snapshot's kept
  // above its chunk's newest is a late copy of it: Volume::pin).
  if (st.errors == 0) objectsKnown(*v);
  logInfo("volume " + name + ": collection: " + std::to_string(st.listed) + " chunk objects, " +
          std::to_string(st.deleted) + " deleted, " + std::to_string(st.errors) + " errors");
  return st;
}

Engine::CollectStats Engine::collectProgress(const std::string& name) {
  std::lock_guard<std::mutex> l(collectMu_);
  auto it = collectProgress_.find(name);
  return it == collectProgress_.end() ? CollectStats{} : it->second;
}

}  // namespace ferry
