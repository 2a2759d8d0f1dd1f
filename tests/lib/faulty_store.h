#pragma once
// An ObjectStore wrapper that fails, stalls or slows requests on command: the seam
// for store outages in engine tests (after LevelDB's fault-injection env).

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "ferry/object_store.h"

namespace ferry::testing {

class FaultyStore : public ObjectStore {
 public:
  struct Control {
    std::atomic<bool> down{false};      // every request fails as unavailable
    std::atomic<bool> denied{false};    // every request fails as permission denied
    std::atomic<int> latencyMs{0};
    // Deletes that still succeed before every later one fails (a crash in the middle
    // of a sequence of deletes); -1 = no limit.
    std::atomic<int64_t> removeBudget{-1};
    // Deletes take this long before they are done.
    std::atomic<int> removeLatencyMs{0};
    // PUTs that still succeed before every later one fails as unavailable; -1 = no limit.
    std::atomic<int64_t> putBudget{-1};
    // PUTs are stored, then answered with an error (a timeout after the server took it).
    std::atomic<bool> putsLandButFail{false};
    // The same for PUTs of chunk objects only.
    std::atomic<bool> chunkPutsLandButFail{false};
    // PUTs of chunk objects fail as unavailable; leases, journal segments, headers
    // and manifests still go through.
    std::atomic<bool> chunkPutsFail{false};
    // PUTs of chunk objects take this long before they land (counted in chunkPuts
    // as they start): an upload on its way.
    std::atomic<int> chunkPutLatencyMs{0};
    // Every request on a lease (volumes/<name>/lease.json) fails as unavailable.
    std::atomic<bool> leaseDown{false};
    std::atomic<uint64_t> puts{0}, gets{0}, chunkPuts{0};
  };

  FaultyStore(std::unique_ptr<ObjectStore> inner, std::shared_ptr<Control> control)
      : inner_(std::move(inner)), c_(std::move(control)) {}

  Status put(const std::string& key, std::span<const uint8_t> data) override {
    if (Status s = beforePut(key); !s) return s;
    return afterPut(key, inner_->put(key, data));
  }
  Result<std::string> putIfTag(const std::string& key, std::span<const uint8_t> data,
                               const std::string& ifTag) override {
    if (Status s = beforePut(key); !s) return s;
    auto tag = inner_->putIfTag(key, data, ifTag);
    if (Status s = afterPut(key, tag.status()); !s) return s;
    return tag;
  }
  Result<size_t> get(const std::string& key, uint64_t offset, std::span<uint8_t> out) override {
    if (Status s = gate(key); !s) return s;
    ++c_->gets;
    return inner_->get(key, offset, out);
  }
  Result<std::string> getAll(const std::string& key) override {
    if (Status s = gate(key); !s) return s;
    return inner_->getAll(key);
  }
  Result<TaggedObject> getTagged(const std::string& key) override {
    if (Status s = gate(key); !s) return s;
    return inner_->getTagged(key);
  }
  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
    if (Status s = gate(); !s) return s;
    return inner_->list(prefix);
  }
  Status remove(const std::string& key) override {
    if (Status s = gate(key); !s) return s;
    if (int ms = c_->removeLatencyMs.load()) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    int64_t left = c_->removeBudget.load();
    while (left >= 0) {
      if (left == 0) return Status::unavailable("injected: crashed before deleting " + key);
      if (c_->removeBudget.compare_exchange_weak(left, left - 1)) break;
    }
    return inner_->remove(key);
  }
  std::string describe() const override { return "faulty(" + inner_->describe() + ")"; }

 private:
  // What every PUT meets before it reaches the store, and the answer it gets after.
  Status beforePut(const std::string& key) {
    if (Status s = gate(key); !s) return s;
    for (int64_t left = c_->putBudget.load(); left >= 0;) {
      if (left == 0) return Status::unavailable("injected: PUT of " + key + " refused");
      if (c_->putBudget.compare_exchange_weak(left, left - 1)) break;
    }
    bool chunk = key.find("/chunks/") != std::string::npos;
    if (c_->chunkPutsFail && chunk) return Status::unavailable("injected: PUT of " + key + " failed");
    ++c_->puts;
    if (chunk) {
      ++c_->chunkPuts;
      if (int ms = c_->chunkPutLatencyMs.load()) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
    return Status::ok();
  }
  Status afterPut(const std::string& key, Status landed) {
    bool chunk = key.find("/chunks/") != std::string::npos;
    if (landed && (c_->putsLandButFail || (chunk && c_->chunkPutsLandButFail))) {
      return Status::unavailable("injected: timed out after the PUT of " + key + " landed");
    }
    return landed;
  }
  Status gate(const std::string& key = "") {
    if (c_->leaseDown && key.ends_with("/lease.json")) return Status::unavailable("injected: lease " + key + " unreachable");
    if (int ms = c_->latencyMs.load()) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    if (c_->down) return Status::unavailable("injected: store down");
    if (c_->denied) return Status::denied("injected: access denied");
    return Status::ok();
  }
  std::unique_ptr<ObjectStore> inner_;
  std::shared_ptr<Control> c_;
};

}  // namespace ferry::testing
