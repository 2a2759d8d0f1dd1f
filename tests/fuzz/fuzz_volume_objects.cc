// libFuzzer target: what a gateway reads back from the store about a volume — the
// header, the lease, snapshot manifests, chunk keys from a listing — and the admin
// socket's requests.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "format.h"
#include "lease.h"
#include "ferry/strings.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)ferry::decodeHeader(in);
  // A manifest that reads must read the same once written again.
  if (auto m = ferry::decodeManifest(in)) {
    std::string text = ferry::encodeManifest(m.value());
    auto again = ferry::decodeManifest(text);
    if (!again || ferry::encodeManifest(again.value()) != text) __builtin_trap();
  }
  (void)ferry::decodeLease(in);
  (void)ferry::parseChunkKey(in);
  (void)ferry::parseSize(in);
  (void)ferry::checkVolumeName(in);
  (void)ferry::parseQuery(in);
  return 0;
}
