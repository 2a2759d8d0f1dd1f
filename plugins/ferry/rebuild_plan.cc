#include "rebuild_plan.h"

#include <algorithm>
#include <limits>
#include <tuple>

namespace ferry {

RebuildPlan planRebuild(const std::vector<JournalPiece>& pieces, const std::vector<uint64_t>& patchPages,
                        uint64_t length, uint64_t pageSize, uint64_t firstPage, uint64_t endPage) {
  constexpr size_t kNone = std::numeric_limits<size_t>::max();
  constexpr size_t kPatch = kNone - 1;
  constexpr size_t kUnwanted = kNone - 2;
  const uint64_t pages = (length + pageSize - 1) / pageSize;
  // Which piece each page comes from: the newest that holds it.
  std::vector<size_t> owner(pages, kNone);
  for (uint64_t page = 0; page < pages && page / 64 < patchPages.size(); ++page) {
    if ((patchPages[page / 64] >> (page % 64)) & 1) owner[page] = kPatch;
  }
  for (uint64_t page = 0; page < pages; ++page) {
    if (page < firstPage || page >= endPage) owner[page] = kUnwanted;
  }
  auto pageSpan = [&](const JournalPiece& p) {
    return std::pair<uint64_t, uint64_t>{p.offset / pageSize,
                                         std::min(pages, (uint64_t{p.offset} + p.length + pageSize - 1) / pageSize)};
  };
  for (size_t i = pieces.size(); i-- > 0;) {
    auto [first, end] = pageSpan(pieces[i]);
    for (uint64_t page = first; page < end; ++page) {
      if (owner[page] == kNone) owner[page] = i;
    }
  }
  RebuildPlan plan;
  auto firstNone = std::find(owner.begin(), owner.end(), kNone);
  plan.needsObject = firstNone != owner.end();
  if (plan.needsObject) {
    auto lastNone = std::find(owner.rbegin(), owner.rend(), kNone);
    plan.objectFrom = static_cast<uint64_t>(firstNone - owner.begin()) * pageSize;
    plan.objectTo = std::min(length, static_cast<uint64_t>(owner.rend() - lastNone) * pageSize);
  }
  for (size_t i = 0; i < pieces.size();) {
    RebuildPlan::Read read{pieces[i].segment, std::numeric_limits<uint64_t>::max(), 0, {}};
    for (; i < pieces.size() && pieces[i].segment == read.segment; ++i) {
      const JournalPiece& p = pieces[i];
      auto [first, end] = pageSpan(p);
      for (uint64_t page = first; page < end;) {
        if (owner[page] != i) {
          ++page;
          continue;
        }
        uint64_t runEnd = page + 1;
        while (runEnd < end && owner[runEnd] == i) ++runEnd;
        const uint64_t at = page * pageSize;
        const uint64_t stop = std::min({runEnd * pageSize, uint64_t{p.offset} + p.length, length});
        RebuildPlan::Copy copy{p.dataOffset + (at - p.offset), static_cast<uint32_t>(at),
                               static_cast<uint32_t>(stop - at)};
        read.from = std::min(read.from, copy.dataOffset);
        read.to = std::max(read.to, copy.dataOffset + copy.length);
        read.copies.push_back(copy);
        page = runEnd;
      }
    }
    if (!read.copies.empty()) plan.reads.push_back(std::move(read));
  }
  return plan;
}

std::vector<SegmentRange> mergeReads(const std::vector<RebuildPlan>& plans, uint64_t maxGap, uint64_t maxLength) {
  std::vector<SegmentRange::Part> all;
  for (size_t p = 0; p < plans.size(); ++p) {
    for (size_t r = 0; r < plans[p].reads.size(); ++r) all.push_back({p, r});
  }
  auto read = [&](const SegmentRange::Part& part) -> const RebuildPlan::Read& {
    return plans[part.plan].reads[part.read];
  };
  std::sort(all.begin(), all.end(), [&](const SegmentRange::Part& a, const SegmentRange::Part& b) {
    const RebuildPlan::Read& x = read(a);
    const RebuildPlan::Read& y = read(b);
    return std::tie(x.segment, x.from) < std::tie(y.segment, y.from);
  });
  std::vector<SegmentRange> ranges;
  for (const SegmentRange::Part& part : all) {
    const RebuildPlan::Read& r = read(part);
    if (!ranges.empty()) {
      SegmentRange& last = ranges.back();
      const uint64_t to = std::max(last.to, r.to);
      if (last.segment == r.segment && r.from <= last.to + maxGap && to - last.from <= maxLength) {
        last.to = to;
        last.parts.push_back(part);
        continue;
      }
    }
    ranges.push_back({r.segment, r.from, r.to, {part}});
  }
  return ranges;
}

}  // namespace ferry
