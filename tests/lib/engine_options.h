#pragma once
// What the engine's unit tests share: a small, fast engine (16 MiB cache, two upload
// threads, short lease and commit timers), optionally behind the fault seam, and
// opening one that must open. Header-only.

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "engine.h"
#include "faulty_store.h"
#include "metadata.h"

namespace ferry::testing {

inline EngineOptions smallEngine(const std::string& stateDir, const std::string& storeUrl,
                                 std::shared_ptr<FaultyStore::Control> faults = nullptr) {
  EngineOptions o;
  o.stateDir = stateDir;
  o.storeUrl = storeUrl;
  o.cacheSize = 16 << 20;
  o.uploadThreads = 2;
  o.leaseTtlSeconds = 3;
  o.commitIntervalMs = 50;
  o.shutdownTimeoutSeconds = 10;
  if (faults) {
    o.wrapStore = [faults](std::unique_ptr<ObjectStore> inner) -> std::unique_ptr<ObjectStore> {
      return std::make_unique<FaultyStore>(std::move(inner), faults);
    };
  }
  return o;
}

// What a crash that nothing can tell more about (a machine crash: another boot) leaves
// in a state dir: its running mark still set, and no map of the chunks written last
// (WrittenMap), so every cached chunk is distrusted.
inline Status markCrashed(const std::string& stateDir) {
  auto meta = Metadata::open(stateDir, false);
  if (!meta) return meta.status();
  for (const auto& f : std::filesystem::directory_iterator(stateDir)) {
    if (f.path().extension() == ".written") std::filesystem::remove(f.path());
  }
  return meta.value()->setMeta("running", "1");
}

// Opens and starts the engine; throws (failing the test) with the reason if it cannot.
inline std::unique_ptr<Engine> startEngine(const EngineOptions& o) {
  auto e = Engine::open(o);
  if (!e) throw std::runtime_error(e.status().toString());
  if (Status s = e.value()->start(); !s) throw std::runtime_error(s.toString());
  return std::move(e).value();
}

}  // namespace ferry::testing
