// CRC-32C (Castagnoli), as iSCSI, ext4 and btrfs use it: what a clean cached chunk's
// row records of its generation's content, so that a start after a machine crash can
// tell whether the cache file still holds exactly that (docs/volume-engine.md,
// "Verified after a crash"). The SSE 4.2 instruction where the CPU has it, a table
// otherwise; both give the same value.
#pragma once

#include <cstdint>
#include <span>

namespace ferry {

// The CRC-32C of data, continuing from crc (0 to start).
uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0);
// The same, always by table (for tests: it must agree with crc32c).
uint32_t crc32cPortable(std::span<const uint8_t> data, uint32_t crc = 0);

}  // namespace ferry
