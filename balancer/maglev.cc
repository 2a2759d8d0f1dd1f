#include "maglev.h"

namespace ferry::balancer {

uint64_t maglevHash(const std::string& s, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

std::vector<uint32_t> buildMaglev(const std::vector<MaglevBackend>& backends, uint32_t seed, uint32_t size) {
  std::vector<uint32_t> table(size, kNoBackend);
  struct Perm {
    uint32_t index;
    uint64_t offset;
    uint64_t skip;
    uint64_t next = 0;
  };
  std::vector<Perm> perms;
  for (uint32_t i = 0; i < backends.size(); ++i) {
    if (!backends[i].up) continue;
    uint64_t offset = maglevHash(backends[i].name, seed) % size;
    uint64_t skip = maglevHash(backends[i].name, ~static_cast<uint64_t>(seed)) % (size - 1) + 1;
    perms.push_back({i, offset, skip});
  }
  if (perms.empty()) return table;
  // Each backend in turn takes the next free slot of its own permutation
  // (offset + j * skip) mod size, until every slot is taken.
  uint32_t filled = 0;
  while (true) {
    for (Perm& p : perms) {
      uint64_t slot = (p.offset + p.next * p.skip) % size;
      while (table[slot] != kNoBackend) {
        ++p.next;
        slot = (p.offset + p.next * p.skip) % size;
      }
      table[slot] = p.index;
      ++p.next;
      if (++filled == size) return table;
    }
  }
}

}  // namespace ferry::balancer
