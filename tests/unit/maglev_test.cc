// The Maglev table: balance, disruption when the backend set changes, and that every
// node (every process) builds the same table.

#include "maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace ferry::balancer {
namespace {

constexpr uint32_t kM = 65537;

std::vector<MaglevBackend> named(int n) {
  std::vector<MaglevBackend> out;
  for (int i = 0; i < n; ++i) out.push_back({"control-" + std::to_string(i + 1), true});
  return out;
}

std::vector<int> shares(const std::vector<uint32_t>& table, size_t n) {
  std::vector<int> count(n, 0);
  for (uint32_t b : table) count.at(b)++;
  return count;
}

TEST(Maglev, EveryBackendOwnsWithinOnePercentOfItsShare) {
  for (int n : {1, 2, 3, 5, 7, 10, 16, 33, 50, 64, 99, 100}) {
    auto table = buildMaglev(named(n), 42, kM);
    auto count = shares(table, static_cast<size_t>(n));
    double fair = double(kM) / n;
    for (int i = 0; i < n; ++i) {
      EXPECT_LE(std::abs(count[i] - fair), fair * 0.01) << "n=" << n << " backend " << i;
    }
    // Filling in turns gives each backend floor or ceil of its share.
    auto [lo, hi] = std::minmax_element(count.begin(), count.end());
    EXPECT_LE(*hi - *lo, 1) << "n=" << n;
  }
}

TEST(Maglev, RemovingOneOfNMovesAboutOneNth) {
  for (int n : {3, 5, 10, 20, 50, 100}) {
    auto all = named(n);
    auto before = buildMaglev(all, 7, kM);
    all[static_cast<size_t>(n / 2)].up = false;
    auto after = buildMaglev(all, 7, kM);
    int moved = 0, movedElsewhere = 0;
    for (uint32_t s = 0; s < kM; ++s) {
      if (before[s] == after[s]) continue;
      ++moved;
      if (before[s] != static_cast<uint32_t>(n / 2)) ++movedElsewhere;
      EXPECT_NE(after[s], static_cast<uint32_t>(n / 2));
    }
    double frac = double(moved) / kM;
    // The removed backend's slots must move (1/N); Maglev moves some others too, more
    // as M/N shrinks (the paper's figure 12): measured 1.0-1.2/N up to N = 20 and about
    // 1.5/N at N = 100. Established flows do not follow: the connection table keeps them.
    EXPECT_GE(frac, 1.0 / n * 0.99) << "n=" << n;
    EXPECT_LE(frac, (n <= 20 ? 1.2 : 1.6) / n) << "n=" << n << " moved " << moved << " of which not the removed one's "
                                                << movedElsewhere;
  }
}

TEST(Maglev, AddingOneMovesAboutOneNthAndOnlyToTheNewOne) {
  for (int n : {3, 10, 50}) {
    auto all = named(n + 1);
    all.back().up = false;
    auto before = buildMaglev(all, 9, kM);
    all.back().up = true;
    auto after = buildMaglev(all, 9, kM);
    int moved = 0;
    for (uint32_t s = 0; s < kM; ++s) moved += before[s] != after[s];
    EXPECT_LE(double(moved) / kM, (n < 20 ? 1.2 : 1.6) / (n + 1)) << "n=" << n;
    int toOthers = 0;
    for (uint32_t s = 0; s < kM; ++s) toOthers += before[s] != after[s] && after[s] != static_cast<uint32_t>(n);
    // Most moved slots go to the new backend; Maglev reshuffles a few among the rest.
    EXPECT_LE(double(toOthers) / kM, 0.6 / (n + 1)) << "n=" << n;
  }
}

TEST(Maglev, NoBackendUpFillsNothing) {
  auto all = named(3);
  for (auto& b : all) b.up = false;
  auto table = buildMaglev(all, 1, kM);
  EXPECT_TRUE(std::all_of(table.begin(), table.end(), [](uint32_t b) { return b == kNoBackend; }));
  EXPECT_TRUE(buildMaglev({}, 1, kM).front() == kNoBackend);
}

TEST(Maglev, DownBackendsKeepTheirIndexesButOwnNothing) {
  auto all = named(4);
  all[0].up = false;
  auto count = shares(buildMaglev(all, 3, kM), 4);
  EXPECT_EQ(count[0], 0);
  EXPECT_GT(count[3], 0);
}

TEST(Maglev, TheSeedAndTheNamesDecideTheTable) {
  auto a = buildMaglev(named(5), 1, kM);
  EXPECT_EQ(a, buildMaglev(named(5), 1, kM));
  EXPECT_NE(a, buildMaglev(named(5), 2, kM));
  // A stable function of its input: these values must not change between builds, or
  // nodes on different versions would disagree about every flow.
  EXPECT_EQ(maglevHash("control-1", 0), 0x0b6d4f345e161431ull);
  EXPECT_EQ(maglevHash("control-1", 42), 0x173d050121b23d4bull);
  EXPECT_EQ(maglevHash("h3", ~uint64_t{5}), 0xc810a45336e07b6eull);
  // (These values were worked out apart from this code, in Python: FNV-1a 64 over the
  // bytes with the seed xored into the offset basis, then murmur3's fmix64.)
  EXPECT_EQ(maglevHash("", 0), 0xefd01f60ba992926ull) << std::hex << maglevHash("", 0);
}

TEST(Maglev, TwoProcessesBuildTheSameTable) {
  // `ferry-balancer table` is what an operator runs on each node to compare; two runs
  // of it (two processes) and this process must agree on every slot.
  const char* build = std::getenv("FERRY_BUILD_DIR");
  if (!build) GTEST_SKIP() << "FERRY_BUILD_DIR is not set (run under ctest)";
  testing::TempDir dir;
  std::ofstream(dir / "lb.json") << R"({"seed": 77,
    "services": [{"name": "api", "vip": "198.51.100.10", "port": 443, "host_port": 18443}],
    "backends": [{"name": "a", "address": "10.0.0.1"}, {"name": "b", "address": "10.0.0.2"},
                 {"name": "c", "address": "10.0.0.3"}, {"name": "d", "address": "10.0.0.4"}]})";
  auto ring = buildMaglev({{"a", true}, {"b", false}, {"c", true}, {"d", true}}, 77, kM);
  std::string bytes(reinterpret_cast<const char*>(ring.data()), ring.size() * sizeof(uint32_t));
  char want[32];
  std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(maglevHash(bytes, 0)));
  for (int run = 0; run < 2; ++run) {
    std::string out;
    ASSERT_EQ(testing::runCommand(std::string(build) + "/balancer/ferry-balancer table --config " + (dir / "lb.json") +
                                      " --down b",
                                  &out),
              0)
        << out;
    auto doc = nlohmann::json::parse(out, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << out;
    EXPECT_EQ(doc.value("digest", ""), want) << out;
    EXPECT_EQ(doc["slots"].value("b", -1), 0) << out;
  }
}

}  // namespace
}  // namespace ferry::balancer
