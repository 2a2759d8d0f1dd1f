// planRebuild against applying every piece in order (the rebuild it replaces),
// mergeReads, and runParallel and ByteGate, which rebuilds and uploads go through.
#include "rebuild_plan.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <new>
#include <random>
#include <set>
#include <thread>

#include "byte_gate.h"
#include "parallel.h"

namespace ferry {
namespace {

constexpr uint64_t kPage = 4096;

// Applies the plan: the object where needed (filler elsewhere, which must not show),
// the reads' copies from the segments' bodies, then the patch's pages.
std::vector<uint8_t> applyPlan(const RebuildPlan& plan, const std::vector<uint8_t>& object,
                               const std::map<uint64_t, std::vector<uint8_t>>& bodies,
                               const std::vector<uint64_t>& patch, const std::vector<uint8_t>& patchBytes) {
  // The object's bytes in [objectFrom, objectTo) only.
  std::vector<uint8_t> chunk(object.size(), 0xAA);
  if (plan.needsObject) {
    EXPECT_LT(plan.objectFrom, plan.objectTo);
    EXPECT_LE(plan.objectTo, object.size());
    std::copy(object.begin() + static_cast<std::ptrdiff_t>(plan.objectFrom),
              object.begin() + static_cast<std::ptrdiff_t>(plan.objectTo),
              chunk.begin() + static_cast<std::ptrdiff_t>(plan.objectFrom));
  }
  for (const RebuildPlan::Read& r : plan.reads) {
    const std::vector<uint8_t>& body = bodies.at(r.segment);
    EXPECT_LE(r.to, body.size());
    for (const RebuildPlan::Copy& c : r.copies) {
      EXPECT_GE(c.dataOffset, r.from);
      EXPECT_LE(c.dataOffset + c.length, r.to);
      std::copy_n(body.begin() + static_cast<std::ptrdiff_t>(c.dataOffset), c.length, chunk.begin() + c.offset);
    }
  }
  for (uint64_t page = 0; page * kPage < chunk.size(); ++page) {
    if (page / 64 < patch.size() && ((patch[page / 64] >> (page % 64)) & 1)) {
      uint64_t end = std::min(chunk.size(), (page + 1) * kPage);
      std::copy(patchBytes.begin() + static_cast<std::ptrdiff_t>(page * kPage),
                patchBytes.begin() + static_cast<std::ptrdiff_t>(end),
                chunk.begin() + static_cast<std::ptrdiff_t>(page * kPage));
    }
  }
  return chunk;
}

TEST(RebuildPlanTest, GivesWhatApplyingEveryPieceInOrderGives) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 300; ++round) {
    // 64 pages, or a last chunk ending inside a page.
    const uint64_t length = (round % 3 == 0) ? 64 * kPage - 1000 : 64 * kPage;
    const uint64_t pages = (length + kPage - 1) / kPage;
    std::vector<uint8_t> object(length);
    for (auto& b : object) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> expected = object;
    std::vector<JournalPiece> pieces;
    std::map<uint64_t, std::vector<uint8_t>> bodies;
    const int segments = static_cast<int>(rng() % 12);
    for (int s = 0; s < segments; ++s) {
      const uint64_t segment = 100 + s * 3;
      std::vector<uint8_t>& body = bodies[segment];
      body.resize(8 + rng() % 64);  // another chunk's entries come first
      // Runs of pages in ascending order, as a segment lays out one chunk.
      for (uint64_t page = rng() % 8; page < pages; page += 1 + rng() % 20) {
        const uint64_t runPages = 1 + rng() % 6;
        const uint64_t offset = page * kPage;
        const uint64_t piece = std::min(runPages * kPage, length - offset);
        pieces.push_back({segment, body.size(), static_cast<uint32_t>(offset), static_cast<uint32_t>(piece)});
        for (uint64_t k = 0; k < piece; ++k) {
          body.push_back(static_cast<uint8_t>(rng()));
          expected[offset + k] = body.back();
        }
        page += runPages;
      }
      body.resize(body.size() + rng() % 64);
    }
    std::vector<uint64_t> patch;
    std::vector<uint8_t> patchBytes(length);
    for (auto& b : patchBytes) b = static_cast<uint8_t>(rng());
    if (round % 2 == 0) {
      patch.assign((pages + 63) / 64, 0);
      for (uint64_t page = 0; page < pages; ++page) {
        if (rng() % 4 == 0) {
          patch[page / 64] |= uint64_t{1} << (page % 64);
          for (uint64_t k = page * kPage; k < std::min(length, (page + 1) * kPage); ++k) expected[k] = patchBytes[k];
        }
      }
    }
    RebuildPlan plan = planRebuild(pieces, patch, length, kPage);
    ASSERT_EQ(applyPlan(plan, object, bodies, patch, patchBytes), expected) << "round " << round;
    // No two reads write the same byte (they run in any order), and one read a segment.
    std::vector<int> written(length, 0);
    std::set<uint64_t> segmentsRead;
    for (const RebuildPlan::Read& r : plan.reads) {
      EXPECT_TRUE(segmentsRead.insert(r.segment).second);
      for (const RebuildPlan::Copy& c : r.copies) {
        for (uint64_t k = c.offset; k < c.offset + c.length; ++k) ASSERT_EQ(++written[k], 1) << "round " << round;
      }
    }
    // A few pages wanted (a small read): those come out right, and nothing outside
    // them is read.
    const uint64_t first = rng() % pages;
    const uint64_t end = std::min(pages, first + 1 + rng() % 4);
    const uint64_t from = first * kPage, to = std::min(length, end * kPage);
    RebuildPlan part = planRebuild(pieces, patch, length, kPage, first, end);
    std::vector<uint8_t> got = applyPlan(part, object, bodies, patch, patchBytes);
    ASSERT_TRUE(std::equal(got.begin() + static_cast<std::ptrdiff_t>(from),
                           got.begin() + static_cast<std::ptrdiff_t>(to),
                           expected.begin() + static_cast<std::ptrdiff_t>(from)))
        << "round " << round << ", pages " << first << "-" << end;
    if (part.needsObject) {
      EXPECT_GE(part.objectFrom, from);
      EXPECT_LE(part.objectTo, to);
    }
    for (const RebuildPlan::Read& r : part.reads) {
      for (const RebuildPlan::Copy& c : r.copies) {
        EXPECT_GE(c.offset, from) << "round " << round;
        EXPECT_LE(c.offset + c.length, to) << "round " << round;
      }
    }
  }
}

TEST(RebuildPlanTest, ReadsNeitherOverwrittenPiecesNorAnObjectEveryPageHides) {
  const uint64_t length = 16 * kPage;
  // Page 0 in three segments, then the whole chunk in a fourth but page 3, patched.
  std::vector<JournalPiece> pieces = {{10, 8, 0, kPage}, {11, 8, 0, kPage}, {12, 8, 0, kPage}};
  RebuildPlan plan = planRebuild(pieces, {}, length, kPage);
  EXPECT_TRUE(plan.needsObject);
  ASSERT_EQ(plan.reads.size(), 1u);
  EXPECT_EQ(plan.reads[0].segment, 12u);
  EXPECT_EQ(plan.reads[0].to - plan.reads[0].from, kPage);
  EXPECT_EQ(plan.objectFrom, kPage);  // pages 1-15 only
  EXPECT_EQ(plan.objectTo, length);

  pieces.push_back({13, 8, kPage, static_cast<uint32_t>(15 * kPage)});
  plan = planRebuild(pieces, {}, length, kPage);
  EXPECT_FALSE(plan.needsObject);
  ASSERT_EQ(plan.reads.size(), 2u);

  // The patch's page 0 hides every piece of it; page 3 read around.
  std::vector<uint64_t> patch = {1 | (1 << 3)};
  plan = planRebuild(pieces, patch, length, kPage);
  EXPECT_FALSE(plan.needsObject);
  ASSERT_EQ(plan.reads.size(), 1u);
  EXPECT_EQ(plan.reads[0].segment, 13u);
  ASSERT_EQ(plan.reads[0].copies.size(), 2u);
  EXPECT_EQ(plan.reads[0].copies[0].offset, kPage);
  EXPECT_EQ(plan.reads[0].copies[0].length, 2 * kPage);
  EXPECT_EQ(plan.reads[0].copies[1].offset, 4 * kPage);
  EXPECT_EQ(plan.reads[0].copies[1].dataOffset, 8 + 3 * kPage);

  // Nothing at all: the object alone.
  plan = planRebuild({}, {}, length, kPage);
  EXPECT_TRUE(plan.needsObject);
  EXPECT_TRUE(plan.reads.empty());
}

// Chunks rebuilt together: their reads of a segment become one range where they lie
// close, and every read is inside exactly one range of its own segment.
TEST(RebuildPlanTest, MergesNearbyReadsOfASegmentAcrossChunks) {
  auto planOf = [](std::vector<RebuildPlan::Read> reads) {
    RebuildPlan p;
    p.reads = std::move(reads);
    return p;
  };
  // Chunk 0 and 1 read segment 5 at 0-8K and 12K-16K (4K apart), chunk 2 at 1M on (far);
  // segment 6 once, by chunk 1.
  std::vector<RebuildPlan> plans = {
      planOf({{5, 0, 8192, {}}}),
      planOf({{5, 12288, 16384, {}}, {6, 100, 4196, {}}}),
      planOf({{5, 1 << 20, (1 << 20) + 4096, {}}}),
  };
  auto ranges = mergeReads(plans, 64 << 10, 1 << 20);
  ASSERT_EQ(ranges.size(), 3u);
  EXPECT_EQ(ranges[0].segment, 5u);
  EXPECT_EQ(ranges[0].from, 0u);
  EXPECT_EQ(ranges[0].to, 16384u);
  ASSERT_EQ(ranges[0].parts.size(), 2u);
  EXPECT_EQ(ranges[0].parts[1].plan, 1u);
  EXPECT_EQ(ranges[1].from, uint64_t{1} << 20);
  EXPECT_EQ(ranges[2].segment, 6u);
  EXPECT_EQ(ranges[2].parts[0].plan, 1u);
  EXPECT_EQ(ranges[2].parts[0].read, 1u);
  // No gap allowed: reads that touch still join, those 4K apart do not.
  EXPECT_EQ(mergeReads(plans, 0, 1 << 20).size(), 4u);
  EXPECT_EQ(mergeReads({planOf({{5, 0, 4096, {}}}), planOf({{5, 4096, 8192, {}}})}, 0, 1 << 20).size(), 1u);
  // A range no longer than maxLength, unless one read is.
  EXPECT_EQ(mergeReads(plans, 64 << 10, 12288).size(), 4u);
  EXPECT_EQ(mergeReads({planOf({{5, 0, 1 << 21, {}}})}, 64 << 10, 1 << 20).size(), 1u);

  // Random plans: every read lies in one range of its segment, within the bounds.
  std::mt19937_64 rng(11);
  for (int round = 0; round < 100; ++round) {
    std::vector<RebuildPlan> many(1 + rng() % 8);
    for (RebuildPlan& p : many) {
      for (uint64_t segment = 0; segment < 6; ++segment) {
        if (rng() % 2) continue;
        const uint64_t from = rng() % (4 << 20);
        p.reads.push_back({segment, from, from + 4096 * (1 + rng() % 8), {}});
      }
    }
    const uint64_t gap = rng() % (256 << 10);
    std::map<std::pair<size_t, size_t>, int> seen;
    for (const SegmentRange& range : mergeReads(many, gap, 1 << 20)) {
      for (const SegmentRange::Part& part : range.parts) {
        const RebuildPlan::Read& r = many[part.plan].reads[part.read];
        EXPECT_EQ(r.segment, range.segment);
        EXPECT_GE(r.from, range.from);
        EXPECT_LE(r.to, range.to);
        ++seen[{part.plan, part.read}];
      }
      EXPECT_LE(range.to - range.from, uint64_t{1} << 20);
    }
    size_t reads = 0;
    for (const RebuildPlan& p : many) reads += p.reads.size();
    ASSERT_EQ(seen.size(), reads) << "round " << round;
    for (auto& [key, count] : seen) EXPECT_EQ(count, 1);
  }
}

// The memory uploads of neighbours share: a take waits until enough is given back.
TEST(ByteGateTest, TakeWaitsForWhatOthersHold) {
  ByteGate gate(64);
  ByteGate::Hold first = gate.take(48);
  EXPECT_EQ(first.bytes(), 48u);
  std::atomic<bool> got{false};
  std::thread second([&] {
    ByteGate::Hold h = gate.take(32);
    got = true;
    EXPECT_EQ(h.bytes(), 32u);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(got.load()) << "took more than the gate holds";
  first = ByteGate::Hold();  // given back
  second.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(gate.used(), 0u);
  // A hold shrunk gives back the rest at once.
  ByteGate::Hold most = gate.take(60);
  most.shrinkTo(16);
  EXPECT_EQ(most.bytes(), 16u);
  EXPECT_EQ(gate.used(), 16u);
  most = ByteGate::Hold();
  // More than the whole is cut to the whole; a moved hold gives back once.
  ByteGate::Hold all = gate.take(100);
  EXPECT_EQ(all.bytes(), 64u);
  ByteGate::Hold moved = std::move(all);
  all = ByteGate::Hold();
  EXPECT_EQ(gate.used(), 64u);
  moved = ByteGate::Hold();
  EXPECT_EQ(gate.used(), 0u);
}

TEST(ParallelTest, RunsEveryTaskOnceAndReturnsTheFirstFailure) {
  std::vector<std::atomic<int>> runs(200);
  EXPECT_TRUE(runParallel(runs.size(), 4, [&](size_t i) {
    ++runs[i];
    return Status::ok();
  }));
  for (auto& r : runs) EXPECT_EQ(r.load(), 1);
  EXPECT_TRUE(runParallel(0, 4, [](size_t) { return Status::ioError("never run"); }));

  // Every task from 50 on fails: 50's is the one returned, and not all the rest run.
  std::atomic<int> ran{0};
  Status s = runParallel(1000, 4, [&](size_t i) {
    ++ran;
    return i >= 50 ? Status::ioError("task " + std::to_string(i)) : Status::ok();
  });
  ASSERT_FALSE(s);
  EXPECT_NE(s.toString().find("task 50"), std::string::npos) << s.toString();
  EXPECT_LT(ran.load(), 1000);

  // A task that throws fails like one that returns an error, on any thread.
  s = runParallel(8, 4, [](size_t i) -> Status {
    if (i == 5) throw std::bad_alloc();
    return Status::ok();
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.toErrno(), ENOMEM) << s.toString();
}

}  // namespace
}  // namespace ferry
