#pragma once
// A large short-lived buffer straight from the kernel (an anonymous mapping), given
// back whole when destroyed. malloc would serve it from an arena once a free of that
// size has raised glibc's mmap threshold, and keep the memory afterwards: with uploads
// of neighbours rebuilt together (up to 31 MiB each) bench/journal.sh's drain peaked at
// 338-364 MiB RSS that way, 161 MiB with their buffers mapped (80 MiB without them).

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace ferry {

class PageBuffer {
 public:
  PageBuffer() = default;
  // Zero-filled; throws std::bad_alloc when the kernel has no room.
  explicit PageBuffer(size_t bytes) : size_(bytes) {
    if (bytes == 0) return;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<uint8_t*>(p);
  }
  PageBuffer(PageBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  PageBuffer& operator=(PageBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  ~PageBuffer() { release(); }

  uint8_t* data() { return data_; }
  size_t size() const { return size_; }

 private:
  void release() {
    if (data_) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ferry
