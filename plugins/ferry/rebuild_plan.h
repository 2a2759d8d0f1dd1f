#pragma once
// What rebuilding a chunk from the journal reads (docs/volume-engine.md "The journal"):
// each page comes from the newest piece that holds it, or from a patch's pages in the
// cache file, or else from the chunk's object. Pieces newer ones overwrite whole are
// not read at all; after random writes that is most of a chunk's older pieces, and the
// object too once every page has been written.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ferry {

// Where one change of a chunk lies in a stored journal segment.
struct JournalPiece {
  uint64_t segment;     // its generation
  uint64_t dataOffset;  // of the bytes in the segment's body
  uint32_t offset;      // in the chunk
  uint32_t length;
};

struct RebuildPlan {
  // Bytes of a segment's body that go to the chunk at offset.
  struct Copy {
    uint64_t dataOffset;
    uint32_t offset, length;
  };
  // One range GET of a segment, [from, to) of its body, and where its pages go. The
  // copies of different reads never overlap, so the reads may run in any order.
  struct Read {
    uint64_t segment;
    uint64_t from, to;
    std::vector<Copy> copies;
  };
  std::vector<Read> reads;
  bool needsObject = true;  // some page is in no piece and no patched page
  // The bytes of the object those pages span (within the chunk's length).
  uint64_t objectFrom = 0, objectTo = 0;
};

// pieces: in segment order, each starting on a page and ending on one or at the
// chunk's end (FORMAT.md; openJournal checks); patchPages: the patch's page map (empty
// for none), newer than every piece; length: the chunk's. Only the pages in
// [firstPage, endPage) are wanted (a small read): nothing is read for the others.
RebuildPlan planRebuild(const std::vector<JournalPiece>& pieces, const std::vector<uint64_t>& patchPages,
                        uint64_t length, uint64_t pageSize, uint64_t firstPage = 0, uint64_t endPage = UINT64_MAX);

// One range GET that serves the reads of several plans (chunks rebuilt together):
// plans[p].reads[r] for each of its parts, all of one segment, inside [from, to).
struct SegmentRange {
  struct Part {
    size_t plan, read;
  };
  uint64_t segment;
  uint64_t from, to;
  std::vector<Part> parts;
};

// Joins the plans' reads of each segment that lie at most maxGap bytes apart into
// one range of at most maxLength (a longer read stays whole). A segment lays out its
// chunks in index order (FORMAT.md), so neighbouring chunks rebuilt together read
// neighbouring bytes of it: one GET instead of one per chunk.
std::vector<SegmentRange> mergeReads(const std::vector<RebuildPlan>& plans, uint64_t maxGap, uint64_t maxLength);

}  // namespace ferry
