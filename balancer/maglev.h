#pragma once
// Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4): a lookup table
// of M slots (M prime) in which each backend owns nearly M/N slots, and a change of one
// backend moves about 1/N of them. Every balancer node builds the same table from the
// same seed and backend order, so any of them sends a flow to the same backend.

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::balancer {

struct MaglevBackend {
  std::string name;  // what its permutation is derived from (stable: the config's name)
  bool up = true;    // only backends that are up get slots
};

// The table: size entries, each the index of a backend in `backends`, or kNoBackend
// for every slot when none is up. size must be prime.
std::vector<uint32_t> buildMaglev(const std::vector<MaglevBackend>& backends, uint32_t seed, uint32_t size);

constexpr uint32_t kNoBackend = 0xffffffffu;

// A seeded 64-bit hash of a string (FNV-1a, then a murmur3 finalizer): the same on
// every node and in every process.
uint64_t maglevHash(const std::string& s, uint64_t seed);

}  // namespace ferry::balancer
