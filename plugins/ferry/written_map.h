// Which chunks of a volume the cache file may hold writes of that their committed
// metadata rows lack: one bit per chunk in a small file beside the cache file
// (`<volume>.written`), mapped shared. A bit is set before a write into the cache file
// and cleared once a commit holds every write of that chunk. A process that is killed
// leaves both files in the page cache, so the next start of the same boot knows exactly
// which cached chunks to distrust; after a reboot (a machine crash: the kernel may have
// written some of either file back, not the other) it trusts neither (the boot id in
// the header tells).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ferry/status.h"

namespace ferry {

class WrittenMap {
 public:
  // Creates path, or empties it, for `chunks` chunks, stamped with this boot's id.
  static Result<WrittenMap> open(const std::string& path, uint64_t chunks);
  // The chunks a map left at path marks, if a process of this boot wrote it for
  // `chunks` chunks; nullopt when it cannot tell (no file, another boot, another size,
  // not a map).
  static std::optional<std::vector<uint64_t>> marked(const std::string& path, uint64_t chunks);

  WrittenMap(WrittenMap&& other) noexcept;
  WrittenMap& operator=(WrittenMap&& other) noexcept;
  WrittenMap(const WrittenMap&) = delete;
  WrittenMap& operator=(const WrittenMap&) = delete;
  ~WrittenMap();

  // Before a write of chunk `index` into the cache file.
  void mark(uint64_t index);
  // Once a commit holds every write of chunk `index`.
  void clear(uint64_t index);

 private:
  WrittenMap(uint8_t* base, size_t length, uint64_t chunks) : base_(base), length_(length), chunks_(chunks) {}
  uint64_t* words() const;

  uint8_t* base_ = nullptr;
  size_t length_ = 0;
  uint64_t chunks_ = 0;
};

}  // namespace ferry
