#include "parallel/internal/record.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "parallel/internal/fd.h"

namespace parallel {
namespace internal {
namespace {

constexpr char kMagic[4] = {'P', 'R', 'L', '1'};

// Table built at compile time so Crc32 needs no initialization at run time
// (a signal handler may be the first caller).
struct CrcTable {
  uint32_t entries[256];
  constexpr CrcTable() : entries() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      entries[i] = c;
    }
  }
};
constexpr CrcTable kCrcTable;

void PutLe(uint64_t value, int bytes, unsigned char* out) {
  for (int i = 0; i < bytes; ++i)
    out[i] = static_cast<unsigned char>(value >> (8 * i));
}

uint64_t GetLe(const unsigned char* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i)
    value |= static_cast<uint64_t>(in[i]) << (8 * i);
  return value;
}

}  // namespace

uint32_t Crc32(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < size; ++i)
    c = kCrcTable.entries[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

bool WriteRecord(int fd, RecordKind kind, const void* payload, size_t size) {
  unsigned char header[kRecordHeaderSize] = {};
  std::memcpy(header, kMagic, 4);
  header[4] = static_cast<unsigned char>(kind);
  PutLe(size, 8, header + 8);
  PutLe(Crc32(payload, size), 4, header + 16);
  return WriteFully(fd, header, sizeof(header)) == 0 &&
         WriteFully(fd, payload, size) == 0;
}

void AppendRecord(RecordKind kind, absl::string_view payload,
                  std::string* out) {
  unsigned char header[kRecordHeaderSize] = {};
  std::memcpy(header, kMagic, 4);
  header[4] = static_cast<unsigned char>(kind);
  PutLe(payload.size(), 8, header + 8);
  PutLe(Crc32(payload.data(), payload.size()), 4, header + 16);
  out->append(reinterpret_cast<const char*>(header), sizeof(header));
  out->append(payload.data(), payload.size());
}

absl::StatusOr<bool> TakeRecord(absl::string_view* bytes, Record* record) {
  if (bytes->size() < kRecordHeaderSize) {
    // Check what is there already, so garbage is caught before it grows.
    if (std::memcmp(bytes->data(), kMagic,
                    std::min<size_t>(4, bytes->size())) != 0) {
      return absl::DataLossError("result record has a bad magic number");
    }
    return false;
  }
  const auto* header = reinterpret_cast<const unsigned char*>(bytes->data());
  if (std::memcmp(header, kMagic, 4) != 0) {
    return absl::DataLossError("result record has a bad magic number");
  }
  const uint8_t kind = header[4];
  if (kind < static_cast<uint8_t>(RecordKind::kValue) ||
      kind > static_cast<uint8_t>(RecordKind::kInitFailed) || header[5] != 0 ||
      header[6] != 0 || header[7] != 0) {
    return absl::DataLossError("result record has an unknown kind");
  }
  const uint64_t size = GetLe(header + 8, 8);
  if (size > bytes->size() - kRecordHeaderSize) return false;
  absl::string_view payload = bytes->substr(kRecordHeaderSize, size);
  if (Crc32(payload.data(), payload.size()) != GetLe(header + 16, 4)) {
    return absl::DataLossError("result record fails its checksum");
  }
  record->kind = static_cast<RecordKind>(kind);
  record->payload = std::string(payload);
  bytes->remove_prefix(kRecordHeaderSize + size);
  return true;
}

absl::StatusOr<std::vector<Record>> ParseRecords(absl::string_view bytes) {
  std::vector<Record> records;
  while (!bytes.empty()) {
    Record record;
    absl::StatusOr<bool> taken = TakeRecord(&bytes, &record);
    if (!taken.ok()) return taken.status();
    if (!*taken) {
      return absl::DataLossError(
          bytes.size() < kRecordHeaderSize
              ? "result record truncated in its header"
              : "result record truncated in its payload");
    }
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace internal
}  // namespace parallel
