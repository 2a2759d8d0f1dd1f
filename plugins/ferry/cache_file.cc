#include "cache_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace ferry {

Result<CacheFile> CacheFile::open(const std::string& path, uint64_t size, bool mustExist) {
  int flags = O_RDWR | O_CLOEXEC | (mustExist ? 0 : O_CREAT);
  UniqueFd fd(::open(path.c_str(), flags, 0600));
  if (!fd.valid()) return errnoStatus("open cache file " + path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errnoStatus("stat " + path, errno);
  if (static_cast<uint64_t>(st.st_size) != size && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return errnoStatus("size cache file " + path, errno);
  }
  return CacheFile(std::move(fd), path);
}

Status CacheFile::read(uint64_t offset, void* buf, size_t len) const {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t r = ::pread(fd_.get(), p, len, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return errnoStatus("read cache " + path_, errno);
    }
    if (r == 0) {  // past the end: the file was truncated behind our back
      std::memset(p, 0, len);
      return Status::corruption("cache file " + path_ + " is shorter than its volume");
    }
    p += r;
    offset += static_cast<uint64_t>(r);
    len -= static_cast<size_t>(r);
  }
  return Status::ok();
}

Status CacheFile::write(uint64_t offset, const void* buf, size_t len) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t r = ::pwrite(fd_.get(), p, len, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return errnoStatus("write cache " + path_, errno);
    }
    p += r;
    offset += static_cast<uint64_t>(r);
    len -= static_cast<size_t>(r);
  }
  return Status::ok();
}

Status CacheFile::punch(uint64_t offset, uint64_t len) {
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) != 0) {
    if (errno != EOPNOTSUPP) return errnoStatus("punch hole in " + path_, errno);
    // A file system without hole punching: write zeros instead (takes space).
    static const uint8_t kZeros[65536] = {};
    while (len > 0) {
      size_t n = len < sizeof kZeros ? static_cast<size_t>(len) : sizeof kZeros;
      if (Status s = write(offset, kZeros, n); !s) return s;
      offset += n;
      len -= n;
    }
  }
  return Status::ok();
}

Status CacheFile::sync() {
  if (::fdatasync(fd_.get()) != 0) return errnoStatus("fdatasync " + path_, errno);
  return Status::ok();
}

}  // namespace ferry
