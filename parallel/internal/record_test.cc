#include "parallel/internal/record.h"

#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parallel {
namespace internal {
namespace {

std::string WriteAndRead(
    const std::vector<std::pair<RecordKind, std::string>>& records) {
  const int fd = memfd_create("record_test", MFD_CLOEXEC);
  for (const auto& [kind, payload] : records) {
    EXPECT_TRUE(WriteRecord(fd, kind, payload.data(), payload.size()));
  }
  std::string bytes(lseek(fd, 0, SEEK_END), '\0');
  EXPECT_EQ(pread(fd, bytes.data(), bytes.size(), 0),
            static_cast<ssize_t>(bytes.size()));
  close(fd);
  return bytes;
}

TEST(Record, RoundTripsSeveralRecords) {
  const std::string bytes = WriteAndRead({{RecordKind::kValue, "abc"},
                                          {RecordKind::kCrash, ""},
                                          {RecordKind::kHang, "x"}});
  absl::StatusOr<std::vector<Record>> records = ParseRecords(bytes);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0].kind, RecordKind::kValue);
  EXPECT_EQ((*records)[0].payload, "abc");
  EXPECT_EQ((*records)[1].kind, RecordKind::kCrash);
  EXPECT_EQ((*records)[2].payload, "x");
}

TEST(Record, EmptyInputIsNoRecords) {
  absl::StatusOr<std::vector<Record>> records = ParseRecords("");
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty());
}

TEST(Record, RejectsEveryTruncation) {
  const std::string bytes =
      WriteAndRead({{RecordKind::kFailure, "payload bytes"}});
  for (size_t length = 1; length < bytes.size(); ++length) {
    EXPECT_FALSE(ParseRecords(bytes.substr(0, length)).ok()) << length;
  }
}

TEST(Record, RejectsEverySingleByteCorruption) {
  const std::string good = WriteAndRead({{RecordKind::kValue, "0123456789"}});
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x5a;
    EXPECT_FALSE(ParseRecords(bad).ok()) << "byte " << i;
  }
}

TEST(Record, Crc32MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32("123456789", 9), 0xcbf43926u);
}

}  // namespace
}  // namespace internal
}  // namespace parallel
