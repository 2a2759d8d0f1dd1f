#include "journal_format.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "format.h"

namespace ferry {
namespace {

constexpr char kMagic[4] = {'F', 'J', 'N', '1'};
constexpr size_t kEntryBytes = 16;

template <typename T>
void putLe(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

template <typename T>
T getLe(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(p[i]) << (8 * i);
  return v;
}

}  // namespace

std::string journalPrefix(std::string_view volume) {
  return volumePrefix(volume) + "journal/";
}

std::string journalKey(std::string_view volume, uint64_t generation) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, generation);
  return journalPrefix(volume) + buf;
}

std::optional<uint64_t> parseJournalKey(std::string_view tail) {
  auto generation = parseHex16(tail);
  if (!generation || *generation == 0) return std::nullopt;
  return generation;
}

std::string encodeJournalHeader(const std::vector<JournalEntry>& entries) {
  std::string out(kMagic, sizeof kMagic);
  putLe<uint32_t>(out, static_cast<uint32_t>(entries.size()));
  for (const JournalEntry& e : entries) {
    putLe<uint64_t>(out, e.index);
    putLe<uint32_t>(out, e.offset);
    putLe<uint32_t>(out, e.length);
  }
  return out;
}

Result<uint64_t> journalHeaderBytes(std::span<const uint8_t> head, uint64_t bodySize) {
  if (head.size() < kJournalHeadBytes || std::memcmp(head.data(), kMagic, sizeof kMagic) != 0) {
    return Status::corruption("not a journal segment (no FJN1 header)");
  }
  uint64_t bytes = kJournalHeadBytes + uint64_t{getLe<uint32_t>(head.data() + 4)} * kEntryBytes;
  if (bytes > bodySize) {
    return Status::corruption("journal segment header of " + std::to_string(bytes) + " bytes, but the segment holds " +
                              std::to_string(bodySize));
  }
  return bytes;
}

Result<std::vector<JournalEntry>> decodeJournal(std::span<const uint8_t> header, uint64_t bodySize,
                                                uint64_t chunkSize) {
  auto headerBytes = journalHeaderBytes(header, bodySize);
  if (!headerBytes) return headerBytes.status();
  if (headerBytes.value() > header.size()) {
    return Status::corruption("journal segment header of " + std::to_string(headerBytes.value()) + " bytes, but only " +
                              std::to_string(header.size()) + " were read");
  }
  uint64_t count = (headerBytes.value() - kJournalHeadBytes) / kEntryBytes;
  std::vector<JournalEntry> out;
  out.reserve(count);
  uint64_t data = headerBytes.value();
  for (uint64_t i = 0; i < count; ++i) {
    const uint8_t* p = header.data() + kJournalHeadBytes + i * kEntryBytes;
    JournalEntry e{getLe<uint64_t>(p), getLe<uint32_t>(p + 8), getLe<uint32_t>(p + 12), data};
    if (e.length == 0 || uint64_t{e.offset} + e.length > chunkSize) {
      return Status::corruption("journal entry " + std::to_string(i) + " (" + std::to_string(e.offset) + "+" +
                                std::to_string(e.length) + ") does not fit a chunk of " + std::to_string(chunkSize));
    }
    data += e.length;
    if (data > bodySize) {
      return Status::corruption("journal entry " + std::to_string(i) + " runs past the end of the segment");
    }
    out.push_back(e);
  }
  if (data != bodySize) {
    return Status::corruption("journal segment has " + std::to_string(bodySize - data) + " bytes after its entries");
  }
  return out;
}

Result<std::vector<JournalEntry>> readJournalHeader(ObjectStore& store, const std::string& key, uint64_t size,
                                                    uint64_t chunkSize, uint64_t firstRead) {
  std::vector<uint8_t> header(std::min(size, std::max<uint64_t>(firstRead, kJournalHeadBytes)));
  auto got = store.get(key, 0, header);
  if (!got) return got.status().withContext("read journal segment " + key);
  header.resize(got.value());
  auto headerBytes = journalHeaderBytes(header, size);
  if (!headerBytes) return headerBytes.status().withContext(key);
  if (headerBytes.value() > header.size()) {
    const size_t had = header.size();
    header.resize(headerBytes.value());
    got = store.get(key, had, std::span(header).subspan(had));
    if (!got) return got.status().withContext("read journal segment " + key);
    header.resize(had + got.value());
  }
  auto entries =
      decodeJournal(std::span(header).first(std::min<uint64_t>(header.size(), headerBytes.value())), size, chunkSize);
  if (!entries) return entries.status().withContext(key);
  return entries;
}

}  // namespace ferry
