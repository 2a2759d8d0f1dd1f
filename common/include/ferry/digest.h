#pragma once
// Digests of byte strings, as lowercase hex: S3's payload hashes, a local store's
// object tags.

#include <cstdint>
#include <span>
#include <string>

namespace ferry {

std::string sha256Hex(std::span<const uint8_t> data);

}  // namespace ferry
