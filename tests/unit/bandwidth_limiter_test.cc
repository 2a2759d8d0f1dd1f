// The engine's bandwidth limiter: the average rate holds for one and for many threads,
// a new limit reaches transfers already waiting, and close() lets everything go.

#include "bandwidth_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace ferry {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(RateLimitTest, UnlimitedNeverWaits) {
  RateLimit r;
  auto t = Clock::now();
  for (int i = 0; i < 1000; ++i) r.take(1 << 20);
  EXPECT_LT(secondsSince(t), 0.5);
  EXPECT_EQ(r.waitedMicros(), 0u);
}

TEST(RateLimitTest, HoldsTheAverageAcrossThreads) {
  RateLimit r;
  r.setRate(4 << 20);  // 4 MiB/s
  auto t = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 4; ++k) r.take(1 << 20);
    });
  }
  for (auto& th : threads) th.join();
  // 16 MiB at 4 MiB/s: the last transfer may start once 15 MiB are paid for, and
  // one MiB is free to go at once (the first take on an empty bucket) — at least
  // (16 - 1 - 1) / 4 = 3.5 s.
  double took = secondsSince(t);
  EXPECT_GE(took, 3.4);
  EXPECT_LT(took, 8.0);
  EXPECT_GT(r.waitedMicros(), 0u);
}

TEST(RateLimitTest, ANewRateReachesWaiters) {
  RateLimit r;
  r.setRate(8 << 10);
  r.take(1 << 20);  // 128 s of debt at 8 KiB/s
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    r.take(1 << 20);
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(done.load());
  auto t = Clock::now();
  r.setRate(0);  // no limit any more
  waiter.join();
  EXPECT_LT(secondsSince(t), 1.0);
}

TEST(RateLimitTest, CloseReleasesWaiters) {
  RateLimit r;
  r.setRate(8 << 10);
  r.take(1 << 20);
  std::thread waiter([&] { r.take(1 << 20); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto t = Clock::now();
  r.close();
  waiter.join();
  EXPECT_LT(secondsSince(t), 1.0);
}

}  // namespace
}  // namespace ferry
