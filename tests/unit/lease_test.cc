// Conditional writes (ObjectStore::putIfTag) and the volume lease built on them: a
// renewal cannot overwrite a takeover that came between its read and its write, and
// of gateways starting at once only one holds the lease. On file:// and, in
// engine_s3_test, on radosgw (tests/lib/test_stores.h).

#include <gtest/gtest.h>

#include <functional>
#include <future>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "faulty_store.h"
#include "format.h"
#include "lease.h"
#include "store_test.h"

namespace ferry {
namespace {

class LeaseStoreTest : public testing::StoreTest {
 protected:
  std::unique_ptr<ObjectStore> openClient(const std::string& name) {
    auto opened = openStore(stores_.url(name));
    EXPECT_TRUE(opened) << opened.status().toString();
    return opened ? std::move(opened).value() : nullptr;
  }
};

TEST_F(LeaseStoreTest, ConditionalPutsCompareAndSwap) {
  ObjectStore& s = stores_.client("s");
  const std::string key = "volumes/v/lease.json";
  auto first = s.putIfTag(key, bytesOf("one"), "");
  ASSERT_TRUE(first) << first.status().toString();
  auto read = s.getTagged(key);
  ASSERT_TRUE(read) << read.status().toString();
  EXPECT_EQ(read->data, "one");
  EXPECT_EQ(read->tag, first.value()) << "a write's tag is not the one a read gives";

  EXPECT_EQ(s.putIfTag(key, bytesOf("two"), "").status().code(), Code::kConflict) << "created over an object";
  auto second = s.putIfTag(key, bytesOf("two"), first.value());
  ASSERT_TRUE(second) << second.status().toString();
  EXPECT_NE(second.value(), first.value());
  auto stale = s.putIfTag(key, bytesOf("three"), first.value());
  EXPECT_EQ(stale.status().code(), Code::kConflict) << "a write on a stale tag went through";
  EXPECT_EQ(stores_.read("s", key), "two");

  ASSERT_TRUE(s.put(key, bytesOf("plain")));
  EXPECT_EQ(s.putIfTag(key, bytesOf("four"), second.value()).status().code(), Code::kConflict)
      << "a plain put did not change the tag";
  EXPECT_EQ(s.getTagged("volumes/v/absent").status().code(), Code::kNotFound);
  EXPECT_EQ(s.putIfTag("volumes/v/absent", bytesOf("x"), second.value()).status().code(), Code::kConflict)
      << "a write conditional on a version wrote an absent object";
}

// Read, add one, write conditionally, again on a conflict: from several threads with
// clients of their own, no increment is lost.
TEST_F(LeaseStoreTest, ConditionalIncrementsFromManyWritersLoseNone) {
  const std::string key = "volumes/v/counter";
  ASSERT_TRUE(stores_.client("s").put(key, bytesOf("0")));
  constexpr int kWriters = 4, kEach = 15;
  std::vector<std::future<int>> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.push_back(std::async(std::launch::async, [&] {
      auto client = openClient("s");
      int conflicts = 0;
      for (int i = 0; client && i < kEach;) {
        auto cur = client->getTagged(key);
        if (!cur) return -1;
        std::string next = std::to_string(std::stoi(cur->data) + 1);
        auto put = client->putIfTag(key, bytesOf(next), cur->tag);
        if (put) {
          ++i;
        } else if (put.status().code() == Code::kConflict) {
          ++conflicts;
        } else {
          return -1;
        }
      }
      return conflicts;
    }));
  }
  int conflicts = 0;
  for (auto& w : writers) {
    int c = w.get();
    ASSERT_GE(c, 0) << "a store request failed";
    conflicts += c;
  }
  EXPECT_EQ(stores_.read("s", key), std::to_string(kWriters * kEach)) << conflicts << " conflicts on the way";
}

// Runs `between` once, right after the next read of a lease: what another gateway does
// between a renewal's read and its write. And answers the next `lostAnswers`
// conditional lease writes, once stored, with a conflict: what a request retried after
// its first attempt landed gets (412: the tag has moved on, by its own write).
class InterposingStore : public testing::FaultyStore {
 public:
  using FaultyStore::FaultyStore;
  std::function<void()> between;
  int lostAnswers = 0;
  int conflicts = 0;  // conditional lease writes that lost

  Result<TaggedObject> getTagged(const std::string& key) override {
    auto read = FaultyStore::getTagged(key);
    if (key.ends_with("/lease.json") && between) std::exchange(between, nullptr)();
    return read;
  }
  Result<std::string> putIfTag(const std::string& key, std::span<const uint8_t> data,
                               const std::string& ifTag) override {
    auto put = FaultyStore::putIfTag(key, data, ifTag);
    if (put.status().code() == Code::kConflict) ++conflicts;
    if (put && key.ends_with("/lease.json") && lostAnswers > 0) {
      --lostAnswers;
      return Status::conflict("injected: a retry of a PUT that landed");
    }
    return put;
  }
};

TEST_F(LeaseStoreTest, ALeaseWriteWhoseAnswerWasLostIsKnownAsItsOwn) {
  auto inner = openClient("s");
  ASSERT_TRUE(inner);
  InterposingStore lossy(std::move(inner), control_);
  LeaseKeeper a(lossy, "vol", "aaaa", 3);
  lossy.lostAnswers = 1;
  auto epoch = a.acquire(0, false);
  ASSERT_TRUE(epoch) << epoch.status().toString();
  lossy.lostAnswers = 1;
  EXPECT_TRUE(a.renew());
  EXPECT_EQ(lossy.lostAnswers, 0);
  auto lease = readLease(stores_.client("s"), "vol");
  ASSERT_TRUE(lease && lease.value());
  EXPECT_EQ(lease.value()->owner, "aaaa");
  EXPECT_EQ(lease.value()->epoch, epoch.value());
}

TEST_F(LeaseStoreTest, ARenewalDoesNotOverwriteATakeoverBetweenItsReadAndItsWrite) {
  auto inner = openClient("s");
  ASSERT_TRUE(inner);
  InterposingStore racing(std::move(inner), control_);
  LeaseKeeper a(racing, "vol", "aaaa", 3);
  auto epoch = a.acquire(0, false);
  ASSERT_TRUE(epoch) << epoch.status().toString();

  // Gateway b takes the volume over (it waits out a's 3 s ttl) after a's renewal has
  // read the lease as a's and before it writes it.
  LeaseKeeper b(stores_.client("s"), "vol", "bbbb", 3);
  Status taken;
  racing.between = [&] { taken = b.acquire(0, true).status(); };
  Status renewed = a.renew();
  ASSERT_TRUE(taken) << taken.toString();
  EXPECT_EQ(renewed.code(), Code::kFenced) << "the renewal went through: " << renewed.toString();
  EXPECT_NE(renewed.message().find("taken over by gateway bbbb"), std::string::npos) << renewed.toString();

  auto lease = readLease(stores_.client("s"), "vol");
  ASSERT_TRUE(lease && lease.value()) << lease.status().toString();
  EXPECT_EQ(lease.value()->owner, "bbbb") << "the renewal overwrote the takeover";
  EXPECT_GT(lease.value()->epoch, epoch.value());
  EXPECT_TRUE(b.renew()) << "the new owner lost its lease";
  // a's release after being fenced leaves b's lease alone.
  EXPECT_TRUE(a.release());
  lease = readLease(stores_.client("s"), "vol");
  ASSERT_TRUE(lease && lease.value());
  EXPECT_EQ(lease.value()->owner, "bbbb");
  EXPECT_GT(lease.value()->expiresUnix, 0);
}

// The other way round: the owner renews between a takeover's read and its first
// write. The takeover reads again and takes the volume; the owner is fenced.
TEST_F(LeaseStoreTest, ATakeoverThatARenewalOvertakesReadsAgainAndTakesTheVolume) {
  LeaseKeeper a(stores_.client("s"), "vol", "aaaa", 3);
  auto epoch = a.acquire(0, false);
  ASSERT_TRUE(epoch) << epoch.status().toString();
  auto inner = openClient("s");
  ASSERT_TRUE(inner);
  InterposingStore racing(std::move(inner), control_);
  LeaseKeeper b(racing, "vol", "bbbb", 3);
  Status renewed;
  racing.between = [&] {
    // Into the next second: a renewal in the same one writes the same bytes (expires
    // is in seconds), and the same bytes have the same tag.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    renewed = a.renew();
  };
  auto taken = b.acquire(0, true);
  ASSERT_TRUE(renewed) << "the owner's renewal failed: " << renewed.toString();
  ASSERT_TRUE(taken) << "the takeover gave up: " << taken.status().toString();
  EXPECT_GE(racing.conflicts, 1) << "the takeover's first write did not lose to the renewal";
  EXPECT_GT(taken.value(), epoch.value());
  EXPECT_EQ(a.renew().code(), Code::kFenced);
  EXPECT_TRUE(b.renew());
}

// Gateways starting on one volume together: one holds it, every other is refused
// naming a gateway, and the lease in the store is the winner's.
TEST_F(LeaseStoreTest, OfGatewaysStartingAtOnceOneHoldsTheLease) {
  constexpr int kGateways = 4;
  std::vector<std::unique_ptr<ObjectStore>> clients;
  std::vector<std::unique_ptr<LeaseKeeper>> keepers;
  for (int g = 0; g < kGateways; ++g) {
    clients.push_back(openClient("s"));
    ASSERT_TRUE(clients.back());
    keepers.push_back(std::make_unique<LeaseKeeper>(*clients.back(), "vol", "gw" + std::to_string(g), 3));
  }
  std::vector<std::future<Result<uint64_t>>> starts;
  for (auto& k : keepers) starts.push_back(std::async(std::launch::async, [&k] { return k->acquire(0, false); }));
  std::vector<int> winners;
  for (int g = 0; g < kGateways; ++g) {
    auto r = starts[g].get();
    if (r) {
      winners.push_back(g);
    } else {
      EXPECT_EQ(r.status().code(), Code::kBusy) << r.status().toString();
      EXPECT_NE(r.status().message().find("gateway gw"), std::string::npos) << r.status().toString();
    }
  }
  ASSERT_EQ(winners.size(), 1u) << "gateways holding the lease at once";
  auto lease = readLease(stores_.client("s"), "vol");
  ASSERT_TRUE(lease && lease.value());
  EXPECT_EQ(lease.value()->owner, "gw" + std::to_string(winners[0]));
  EXPECT_TRUE(keepers[winners[0]]->renew());
}

}  // namespace
}  // namespace ferry
