// StorePriority: uploads go at full width with no client at the store, a few at a
// time while clients read (and for the quiet time after), never held back when urgent.
#include "store_priority.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <thread>
#include <vector>

namespace ferry {
namespace {

using std::chrono::milliseconds;

// An upload() on another thread: whether it waits, and the turn.
struct PendingUpload {
  explicit PendingUpload(StorePriority& priority)
      : p(priority), turn(std::async(std::launch::async, [&priority] {
          return std::make_unique<StorePriority::Upload>(priority.upload());
        })) {}
  // Whether it is seen waiting in upload() (rather than having its turn) once its
  // thread got that far, under a loaded test run too.
  bool waiting() {
    for (int i = 0; i < 3000 && p.waiting() == 0; ++i) {
      if (turn.wait_for(milliseconds(10)) == std::future_status::ready) return false;
    }
    return p.waiting() == 1 && turn.wait_for(milliseconds(0)) == std::future_status::timeout;
  }
  bool goes() { return turn.wait_for(std::chrono::seconds(30)) == std::future_status::ready; }
  std::unique_ptr<StorePriority::Upload> get() { return turn.get(); }
  StorePriority& p;
  std::future<std::unique_ptr<StorePriority::Upload>> turn;
};

TEST(StorePriorityTest, UploadsGoAtFullWidthWithNoClientAtTheStore) {
  StorePriority p([] { return false; }, 1, milliseconds(50));
  std::vector<StorePriority::Upload> turns;
  for (int i = 0; i < 16; ++i) turns.push_back(p.upload());  // none waits: this thread would hang
  EXPECT_EQ(p.heldBack(), 0u);
}

TEST(StorePriorityTest, WhileAClientReadsUploadsGoAFewAtATime) {
  StorePriority p([] { return false; }, 2, milliseconds(0));
  StorePriority::Client reader = p.client();
  StorePriority::Upload first = p.upload();
  std::optional<StorePriority::Upload> second(p.upload());
  PendingUpload third(p);
  EXPECT_TRUE(third.waiting());  // two are out
  second.reset();
  EXPECT_TRUE(third.goes());  // one slot free again
  auto got = third.get();
  PendingUpload fourth(p);
  EXPECT_TRUE(fourth.waiting());
  reader.end();  // no client left (and no quiet time): full width again
  EXPECT_TRUE(fourth.goes());
  fourth.get();
  EXPECT_EQ(p.heldBack(), 2u);
}

TEST(StorePriorityTest, TheLimitLastsTheQuietTimeAfterTheLastClient) {
  std::atomic<bool> urgent{false};
  StorePriority p([&] { return urgent.load(); }, 1, milliseconds(60000));
  p.client().end();  // a read that just ended
  StorePriority::Upload first = p.upload();
  PendingUpload second(p);
  EXPECT_TRUE(second.waiting());
  urgent = true;  // a checkpoint, say, waits for the uploads now
  EXPECT_TRUE(second.goes());
  second.get();
  EXPECT_EQ(p.heldBack(), 1u);
}

TEST(StorePriorityTest, UrgentUploadsAreNeverHeldBack) {
  StorePriority p([] { return true; }, 1, milliseconds(50));
  StorePriority::Client reader = p.client();
  std::vector<StorePriority::Upload> turns;
  for (int i = 0; i < 8; ++i) turns.push_back(p.upload());
  EXPECT_EQ(p.heldBack(), 0u);
}

TEST(StorePriorityTest, AMovedFromClientCountsOnce) {
  StorePriority p([] { return false; }, 1, milliseconds(0));
  std::optional<StorePriority::Client> a(p.client());
  StorePriority::Client b(std::move(*a));
  a.reset();  // the moved-from one ends nothing
  StorePriority::Upload first = p.upload();
  PendingUpload second(p);
  EXPECT_TRUE(second.waiting());  // b still reads
  b.end();
  b.end();  // twice is once
  EXPECT_TRUE(second.goes());
  second.get();
}

}  // namespace
}  // namespace ferry
