#pragma once
// How many snapshot manifests (snapshots, recovery points) pin each chunk object,
// by chunk index and generation. A recovery point pins every stored chunk of a
// volume, so this holds an entry for each: an open-addressing table (linear probing)
// of 24-byte slots, between 1/8 and 3/4 full: 32-64 bytes an object while pins are
// added, at most 192 after most were dropped, where a node map of key strings took
// ~170 (bench/memory.sh). Not thread-safe: the volume's mutex guards it.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ferry {

class PinCounts {
 public:
  void add(uint64_t index, uint64_t generation);
  // Drops one pin; true when that was the last one (false too when there was none).
  bool release(uint64_t index, uint64_t generation);
  bool contains(uint64_t index, uint64_t generation) const;
  size_t size() const { return used_; }
  size_t capacity() const { return slots_.size(); }

 private:
  struct Slot {
    uint64_t index = 0;
    uint64_t generation = 0;
    uint64_t count = 0;  // 0: an empty slot (as wide as the padding allows)
  };
  size_t home(uint64_t index, uint64_t generation) const;
  // The slot holding (index, generation), or the empty one where it would go.
  // REQUIRES: a non-empty table.
  size_t find(uint64_t index, uint64_t generation) const;
  void erase(size_t slot);
  void rehash(size_t capacity);

  std::vector<Slot> slots_;  // empty, or a power of two long and never full
  size_t used_ = 0;
};

}  // namespace ferry
