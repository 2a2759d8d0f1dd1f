#pragma once
// Bytes of memory one kind of work may hold at once, engine-wide (an upload of
// neighbours rebuilt together: their chunk buffers). take() waits until the bytes are
// free; the Hold it returns gives them back.

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>

namespace ferry {

class ByteGate {
 public:
  explicit ByteGate(uint64_t total) : total_(total) {}

  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& o) noexcept : gate_(std::exchange(o.gate_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    Hold& operator=(Hold&& o) noexcept {
      if (this != &o) {
        release();
        gate_ = std::exchange(o.gate_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
      }
      return *this;
    }
    ~Hold() { release(); }
    uint64_t bytes() const { return bytes_; }
    // Gives back what is held above bytes.
    void shrinkTo(uint64_t bytes) {
      if (gate_ && bytes < bytes_) {
        gate_->give(bytes_ - bytes);
        bytes_ = bytes;
      }
    }

   private:
    friend class ByteGate;
    Hold(ByteGate* gate, uint64_t bytes) : gate_(gate), bytes_(bytes) {}
    void release() {
      if (gate_) gate_->give(bytes_);
      gate_ = nullptr;
      bytes_ = 0;
    }
    ByteGate* gate_ = nullptr;
    uint64_t bytes_ = 0;
  };

  // Waits until bytes (at most the whole) are free and holds them.
  Hold take(uint64_t bytes) {
    bytes = std::min(bytes, total_);
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return used_ + bytes <= total_; });
    used_ += bytes;
    return Hold(this, bytes);
  }
  uint64_t used() const {
    std::lock_guard lock(mu_);
    return used_;
  }

 private:
  void give(uint64_t bytes) {
    {
      std::lock_guard lock(mu_);
      used_ -= bytes;
    }
    cv_.notify_all();
  }
  const uint64_t total_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t used_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace ferry
