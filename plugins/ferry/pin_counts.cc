#include "pin_counts.h"

#include <algorithm>

namespace ferry {
namespace {

constexpr size_t kMinCapacity = 16;

uint64_t mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

size_t PinCounts::home(uint64_t index, uint64_t generation) const {
  return static_cast<size_t>(mix(index ^ mix(generation))) & (slots_.size() - 1);
}

size_t PinCounts::find(uint64_t index, uint64_t generation) const {
  size_t mask = slots_.size() - 1;
  size_t i = home(index, generation);
  while (slots_[i].count != 0 && (slots_[i].index != index || slots_[i].generation != generation)) i = (i + 1) & mask;
  return i;
}

void PinCounts::add(uint64_t index, uint64_t generation) {
  // At most three quarters full: probes stay short.
  if ((used_ + 1) * 4 > slots_.size() * 3) rehash(slots_.empty() ? kMinCapacity : slots_.size() * 2);
  Slot& s = slots_[find(index, generation)];
  if (s.count == 0) {
    s.index = index;
    s.generation = generation;
    ++used_;
  }
  ++s.count;
}

bool PinCounts::release(uint64_t index, uint64_t generation) {
  if (slots_.empty()) return false;
  size_t i = find(index, generation);
  if (slots_[i].count == 0) return false;
  if (--slots_[i].count > 0) return false;
  erase(i);
  --used_;
  // The memory goes back when most pins are gone (a deleted snapshot): to a quarter
  // of the size, which leaves the table at most half full.
  if (used_ == 0) {
    rehash(0);
  } else if (slots_.size() > kMinCapacity && used_ * 8 < slots_.size()) {
    rehash(slots_.size() / 4);
  }
  return true;
}

bool PinCounts::contains(uint64_t index, uint64_t generation) const {
  return !slots_.empty() && slots_[find(index, generation)].count != 0;
}

void PinCounts::erase(size_t slot) {
  // Backward shift: each entry after the hole in its run moves into the hole unless
  // its home lies after the hole (it would then be found no more).
  size_t mask = slots_.size() - 1;
  size_t hole = slot;
  for (size_t j = (hole + 1) & mask; slots_[j].count != 0; j = (j + 1) & mask) {
    size_t h = home(slots_[j].index, slots_[j].generation);
    if (((j - h) & mask) >= ((j - hole) & mask)) {
      slots_[hole] = slots_[j];
      hole = j;
    }
  }
  slots_[hole] = Slot{};
}

void PinCounts::rehash(size_t capacity) {
  // Allocated before the old table is touched: should that fail, every pin is still
  // there (a lost pin would let its object be deleted). Nothing below can fail.
  std::vector<Slot> old(capacity == 0 ? 0 : std::max(capacity, kMinCapacity));
  old.swap(slots_);
  if (slots_.empty()) return;
  for (const Slot& s : old) {
    if (s.count != 0) slots_[find(s.index, s.generation)] = s;
  }
}

}  // namespace ferry
