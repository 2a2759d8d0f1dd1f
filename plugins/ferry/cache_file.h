#pragma once
// One volume's cache file: a sparse file as large as the volume, chunk i at offset
// i * chunk size. Uncached chunks are holes (punched on eviction), so the file takes
// disk space only for what is cached. Thread-safe (pread/pwrite on one fd).

#include <cstdint>
#include <string>

#include "ferry/fd.h"
#include "ferry/status.h"

namespace ferry {

class CacheFile {
 public:
  // Opens or creates path and sets its length to size.
  static Result<CacheFile> open(const std::string& path, uint64_t size, bool mustExist);

  Status read(uint64_t offset, void* buf, size_t len) const;
  Status write(uint64_t offset, const void* buf, size_t len);
  // Deallocates [offset, offset+len): it then reads as zeros and takes no space.
  Status punch(uint64_t offset, uint64_t len);
  Status sync();
  const std::string& path() const { return path_; }

 private:
  CacheFile(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::string path_;
};

}  // namespace ferry
