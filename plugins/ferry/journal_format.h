#pragma once
// Journal segments (format version 1, docs/FORMAT.md "Journal"): the changed pages of
// many chunks of one volume in one object, written when the upload buffer is under
// pressure instead of whole chunks.
//
//   volumes/<name>/journal/<generation>   (16 hex digits)
//
// Body, little-endian: "FJN1", u32 entry count, then per entry u64 chunk index,
// u32 offset in the chunk, u32 length; then the entries' bytes in entry order. A
// segment's generation comes from the same counter as chunk generations: it applies
// to a chunk whose newest whole object is older (a lower generation), in generation
// order, and is void for one whose newest object is newer.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/object_store.h"
#include "ferry/status.h"

namespace ferry {

inline constexpr uint64_t kJournalPage = 4096;  // the unit of change the journal tracks
// The pages that the bytes before `end` touch (the last one may be partial).
inline constexpr uint64_t pagesFor(uint64_t end) {
  return (end + kJournalPage - 1) / kJournalPage;
}
// The 64-bit words of a page map of `pages` pages.
inline constexpr uint64_t pageMapWords(uint64_t pages) {
  return (pages + 63) / 64;
}

struct JournalEntry {
  uint64_t index = 0;   // chunk
  uint32_t offset = 0;  // in the chunk
  uint32_t length = 0;
  uint64_t dataOffset = 0;  // of its bytes in the segment body (decode fills it in)
};

std::string journalPrefix(std::string_view volume);
std::string journalKey(std::string_view volume, uint64_t generation);
// Parses the part after journalPrefix(): 16 hex digits, not zero.
std::optional<uint64_t> parseJournalKey(std::string_view tail);

// The header for these entries; the caller appends their bytes in the same order.
std::string encodeJournalHeader(const std::vector<JournalEntry>& entries);
// A header is read in two steps: its first kJournalHeadBytes give the entry count
// (and so the header's size), then the whole header is decoded. decodeJournal checks
// that every entry lies inside a chunk of chunkSize and that their bytes fill the
// segment of bodySize bytes exactly.
inline constexpr size_t kJournalHeadBytes = 8;
// journalHeaderBytes also refuses a header larger than the segment of bodySize bytes
// (before anyone allocates what it claims).
Result<uint64_t> journalHeaderBytes(std::span<const uint8_t> head, uint64_t bodySize);
Result<std::vector<JournalEntry>> decodeJournal(std::span<const uint8_t> header, uint64_t bodySize, uint64_t chunkSize);

// The entries of the segment at key, of size bytes: one GET of its first firstRead
// bytes (the default holds a header of ~4,000 entries), a second for a larger header.
inline constexpr uint64_t kJournalFirstRead = 64 << 10;
Result<std::vector<JournalEntry>> readJournalHeader(ObjectStore& store, const std::string& key, uint64_t size,
                                                    uint64_t chunkSize, uint64_t firstRead = kJournalFirstRead);

}  // namespace ferry
