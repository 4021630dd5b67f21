#include "parallel/internal/capture.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parallel {
namespace internal {
namespace {

using ::testing::HasSubstr;

std::string TestDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

TEST(Capture, CreatesUnlinkedCloseOnExecFiles) {
  absl::StatusOr<UniqueFd> fd = CreateCaptureFile(TestDir());
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(fcntl(fd->get(), F_GETFD) & FD_CLOEXEC);
  struct stat st;
  ASSERT_EQ(fstat(fd->get(), &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
}

TEST(Capture, ErrorsNameTheDirectory) {
  absl::Status status = CheckTempDir("/no/such/dir");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("'/no/such/dir'"));
  status = CheckTempDir("/dev/null");
  EXPECT_THAT(std::string(status.message()), HasSubstr("Not a directory"));
}

TEST(Capture, CopyRangeCopiesExactlyTheRangeToFilesAndPipes) {
  absl::StatusOr<UniqueFd> from = CreateCaptureFile(TestDir());
  ASSERT_TRUE(from.ok());
  const std::string text = "0123456789";
  ASSERT_EQ(write(from->get(), text.data(), text.size()), 10);
  absl::StatusOr<UniqueFd> to = CreateCaptureFile(TestDir());
  ASSERT_TRUE(to.ok());
  absl::StatusOr<uint64_t> copied = CopyRange(from->get(), 2, 5, to->get());
  ASSERT_TRUE(copied.ok());
  EXPECT_EQ(*copied, 5u);
  char buffer[16] = {};
  ASSERT_EQ(pread(to->get(), buffer, sizeof(buffer), 0), 5);
  EXPECT_EQ(std::string(buffer), "23456");

  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK), 0);
  copied = CopyRange(from->get(), 8, 100, pipe_fds[1]);  // past the end
  ASSERT_TRUE(copied.ok());
  EXPECT_EQ(*copied, 2u);
  ASSERT_EQ(read(pipe_fds[0], buffer, sizeof(buffer)), 2);
  EXPECT_EQ(std::string(buffer, 2), "89");
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

// A borrowed pipe (a task worker's reused lane) is read like an own one, but
// Close() leaves it open: the next input's bytes come through it.
TEST(Capture, BorrowedPipeStaysOpenForTheNextCapture) {
  UniqueFd read_end;
  UniqueFd write_end;
  ASSERT_TRUE(MakeCapturePipe(&read_end, &write_end).ok());
  SpillPool pool(TestDir());
  for (const std::string text : {"first input\n", "", "third\n"}) {
    StreamCapture capture = StreamCapture::Borrow(read_end.get());
    ASSERT_EQ(write(write_end.get(), text.data(), text.size()),
              static_cast<ssize_t>(text.size()));
    capture.Close(pool);
    EXPECT_EQ(capture.pipe_fd(), -1);
    EXPECT_EQ(capture.total(), text.size());
    std::string got(capture.pending(), '\0');
    if (!got.empty()) {
      ASSERT_EQ(pread(capture.file(), got.data(), got.size(),
                      static_cast<off_t>(capture.begin())),
                static_cast<ssize_t>(got.size()));
    }
    EXPECT_EQ(got, text);
    capture.Release(pool);
    EXPECT_NE(fcntl(read_end.get(), F_GETFD), -1) << "Close() closed it";
  }
  // known_empty skips the last read: bytes still queued stay in the pipe.
  StreamCapture capture = StreamCapture::Borrow(read_end.get());
  ASSERT_EQ(write(write_end.get(), "x", 1), 1);
  capture.Close(pool, /*known_empty=*/true);
  EXPECT_EQ(capture.total(), 0u);
  char byte = 0;
  EXPECT_EQ(read(read_end.get(), &byte, 1), 1);
  capture.Release(pool);
}

TEST(Capture, ResolveTempDirPrefersTheOption) {
  EXPECT_EQ(ResolveTempDir("/x"), "/x");
  EXPECT_FALSE(ResolveTempDir("").empty());
}

}  // namespace
}  // namespace internal
}  // namespace parallel
