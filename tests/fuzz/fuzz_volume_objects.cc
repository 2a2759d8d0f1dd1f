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
    auto again = ferry::decodeManifest(ferry::encodeManifest(m.value()));
    if (!again || again.value().chunks.size() != m.value().chunks.size() || again.value().id != m.value().id ||
        again.value().volume != m.value().volume || again.value().sourceStore != m.value().sourceStore) {
      __builtin_trap();
    }
  }
  (void)ferry::decodeLease(in);
  (void)ferry::parseChunkKey(in);
  (void)ferry::parseSize(in);
  (void)ferry::checkVolumeName(in);
  (void)ferry::parseQuery(in);
  return 0;
}
