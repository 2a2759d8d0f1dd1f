#pragma once
// Clients first at the store. While a client's read waits on the store (a cold read, a
// chunk rebuilt from the journal, a read-modify-write), uploads nobody waits for (a
// chunk stored after upload-delay, a journaled one compacted at upload-max-age, a
// hydration copy) send a few requests at a time instead of tens, so that the client's
// GETs do not queue behind theirs at the store. An upload that writers, a checkpoint
// or a shutdown wait for (urgent()) is never held back, nor a hydration copy a
// snapshot waits for. docs/volume-engine.md, "Clients first at the store".

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>

namespace ferry {

class StorePriority {
 public:
  using Clock = std::chrono::steady_clock;

  // widthUnderLoad: upload requests out at once while clients read; quiet: how long
  // after the last client request ended that lasts.
  StorePriority(std::function<bool()> urgent, size_t widthUnderLoad, std::chrono::milliseconds quiet)
      : urgent_(std::move(urgent)), widthUnderLoad_(widthUnderLoad), quiet_(quiet) {}

  // A client's time at the store; ends when destroyed (or moved from and reset).
  class Client {
   public:
    Client() = default;
    Client(Client&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)) {}
    Client& operator=(Client&&) = delete;
    ~Client() { end(); }
    void end();

   private:
    friend class StorePriority;
    explicit Client(StorePriority* owner) : owner_(owner) {}
    StorePriority* owner_ = nullptr;
  };

  // One upload request's turn at the store.
  class Upload {
   public:
    Upload() = default;
    Upload(Upload&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)) {}
    Upload& operator=(Upload&&) = delete;
    ~Upload();

   private:
    friend class StorePriority;
    explicit Upload(StorePriority* owner) : owner_(owner) {}
    StorePriority* owner_ = nullptr;
  };

  Client client();
  // Waits while clients read from the store (or did within quiet) and widthUnderLoad
  // upload requests are out, unless urgent() or the caller's own reason to go (its
  // volume fenced: the request fails at once) says otherwise, asked again every 10 ms.
  Upload upload(const std::function<bool()>& go = {});
  // Upload requests waiting now.
  size_t waiting() const;

  // Upload requests that waited, and for how long in all.
  uint64_t heldBack() const;
  uint64_t heldBackMs() const;

 private:
  bool clientsActive(Clock::time_point now) const;  // REQUIRES: mu_ held

  const std::function<bool()> urgent_;
  const size_t widthUnderLoad_;
  const std::chrono::milliseconds quiet_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t clients_ = 0;                 // GUARDED_BY(mu_)
  Clock::time_point lastClientEnd_{};  // GUARDED_BY(mu_)
  size_t uploads_ = 0;                 // GUARDED_BY(mu_) upload requests out
  size_t waiting_ = 0;                 // GUARDED_BY(mu_)
  uint64_t heldBack_ = 0;              // GUARDED_BY(mu_)
  Clock::duration heldBackFor_{};      // GUARDED_BY(mu_)
};

}  // namespace ferry
