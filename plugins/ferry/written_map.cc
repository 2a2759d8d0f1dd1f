#include "written_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstring>
#include <fstream>
#include <utility>

#include "ferry/fd.h"

namespace ferry {

namespace {

// Header: magic, chunk count (little-endian u64), boot id (NUL-padded); then the
// bitmap, one u64 word per 64 chunks.
constexpr char kMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'W', 'M', '1'};
constexpr size_t kBootIdAt = 16, kBootIdLength = 48, kHeader = 64;

std::string bootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id.substr(0, kBootIdLength);
}

size_t fileLength(uint64_t chunks) {
  return kHeader + (chunks + 63) / 64 * 8;
}

void header(uint8_t* out, uint64_t chunks) {
  std::memset(out, 0, kHeader);
  std::memcpy(out, kMagic, sizeof kMagic);
  for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<uint8_t>(chunks >> (8 * i));
  const std::string id = bootId();
  std::memcpy(out + kBootIdAt, id.data(), id.size());
}

}  // namespace

Result<WrittenMap> WrittenMap::open(const std::string& path, uint64_t chunks) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return errnoStatus("open " + path, errno);
  const size_t length = fileLength(chunks);
  // Emptied first: no bit of an earlier run survives. Then its blocks allocated: a
  // write into a mapped page of a sparse file on a full disk would be a SIGBUS.
  if (::ftruncate(fd.get(), 0) != 0) return errnoStatus("empty " + path, errno);
  if (int err = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(length)); err != 0) {
    return errnoStatus("allocate " + path, err);
  }
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return errnoStatus("map " + path, errno);
  auto* base = static_cast<uint8_t*>(p);
  header(base, chunks);
  return WrittenMap(base, length, chunks);
}

std::optional<std::vector<uint64_t>> WrittenMap::marked(const std::string& path, uint64_t chunks) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<uint8_t> expected(kHeader);
  header(expected.data(), chunks);
  // An unreadable boot id never matches: nothing can be told then.
  if (bytes.size() != fileLength(chunks) || expected[kBootIdAt] == 0 ||
      std::memcmp(bytes.data(), expected.data(), kHeader) != 0) {
    return std::nullopt;
  }
  std::vector<uint64_t> out;
  for (uint64_t w = 0; w < (chunks + 63) / 64; ++w) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + kHeader + w * 8, 8);
    while (word != 0) {
      const uint64_t index = w * 64 + static_cast<uint64_t>(std::countr_zero(word));
      if (index < chunks) out.push_back(index);
      word &= word - 1;
    }
  }
  return out;
}

WrittenMap::WrittenMap(WrittenMap&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)), length_(other.length_), chunks_(other.chunks_) {}

WrittenMap& WrittenMap::operator=(WrittenMap&& other) noexcept {
  if (this != &other) {
    if (base_) ::munmap(base_, length_);
    base_ = std::exchange(other.base_, nullptr);
    length_ = other.length_;
    chunks_ = other.chunks_;
  }
  return *this;
}

WrittenMap::~WrittenMap() {
  if (base_) ::munmap(base_, length_);
}

uint64_t* WrittenMap::words() const {
  return reinterpret_cast<uint64_t*>(base_ + kHeader);
}

void WrittenMap::mark(uint64_t index) {
  if (index >= chunks_) return;
  std::atomic_ref<uint64_t>(words()[index / 64]).fetch_or(uint64_t{1} << (index % 64));
}

void WrittenMap::clear(uint64_t index) {
  if (index >= chunks_) return;
  std::atomic_ref<uint64_t>(words()[index / 64]).fetch_and(~(uint64_t{1} << (index % 64)));
}

}  // namespace ferry
