#include "read_window.h"

namespace ferry {

std::shared_ptr<ReadWindow::Entry> ReadWindow::find(uint64_t index, uint64_t gen) const {
  auto it = entries_.find(index);
  if (it == entries_.end() || it->second->gen != gen) return nullptr;
  return it->second;
}

std::shared_ptr<ReadWindow::Entry> ReadWindow::add(uint64_t index, uint64_t gen, uint32_t nowMs) {
  if (maxEntries_ == 0) return nullptr;
  if (auto it = entries_.find(index); it != entries_.end()) {
    it->second->abandoned = true;
    entries_.erase(it);
  }
  if (entries_.size() >= maxEntries_) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      const Entry& e = *it->second;
      bool done = e.ready && (!e.status || nowMs - e.touchedMs > kStaleMs);
      it = done ? entries_.erase(it) : std::next(it);
    }
  }
  if (entries_.size() >= maxEntries_) {
    // A reader that moved on leaves chunks behind it: the lowest ready one goes.
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->first < index && it->second->ready) {
        entries_.erase(it);
        break;
      }
    }
  }
  if (entries_.size() >= maxEntries_) {
    // Then the furthest-ahead chunk no read-ahead thread has started on: what a reader
    // needs now matters more than what it may need later.
    for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
      if (it->first > index && !it->second->started && !it->second->ready) {
        it->second->abandoned = true;
        entries_.erase(std::next(it).base());
        break;
      }
    }
  }
  if (entries_.size() >= maxEntries_) return nullptr;
  auto e = std::make_shared<Entry>();
  e->gen = gen;
  e->touchedMs = nowMs;
  entries_[index] = e;
  return e;
}

void ReadWindow::consumed(uint64_t index, uint64_t bytes, uint64_t chunkLength, uint32_t nowMs) {
  auto it = entries_.find(index);
  if (it == entries_.end()) return;
  Entry& e = *it->second;
  e.consumed += bytes;
  e.touchedMs = nowMs;
  if (e.consumed >= chunkLength) entries_.erase(it);
}

}  // namespace ferry
