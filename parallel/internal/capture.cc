#include "parallel/internal/capture.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"

namespace parallel {
namespace internal {
namespace {

// sendfile moves at most this much per call on Linux.
constexpr uint64_t kMaxSendfileChunk = 0x7ffff000;

absl::Status WaitWritable(int fd) {
  pollfd pfd = {fd, POLLOUT, 0};
  if (RetryOnEintr([&] { return ::poll(&pfd, 1, -1); }) < 0) {
    return ErrnoStatus("poll on output fd");
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> CopyWithReadWrite(int from, uint64_t offset,
                                           uint64_t length, int to) {
  std::vector<char> buffer(std::min<uint64_t>(length, 1 << 20));
  uint64_t copied = 0;
  while (copied < length) {
    const size_t want = std::min<uint64_t>(buffer.size(), length - copied);
    const ssize_t got = RetryOnEintr(
        [&] { return ::pread(from, buffer.data(), want, offset + copied); });
    if (got < 0) return ErrnoStatus("pread from capture file");
    if (got == 0) break;
    size_t written = 0;
    while (written < static_cast<size_t>(got)) {
      const ssize_t n = RetryOnEintr(
          [&] { return ::write(to, buffer.data() + written, got - written); });
      if (n < 0 && errno == EAGAIN) {
        if (absl::Status s = WaitWritable(to); !s.ok()) return s;
        continue;
      }
      if (n < 0) return ErrnoStatus("write replayed output");
      written += n;
    }
    copied += got;
  }
  return copied;
}

}  // namespace

std::string ResolveTempDir(const std::string& temp_dir) {
  if (!temp_dir.empty()) return temp_dir;
  const char* env = std::getenv("TMPDIR");
  if (env != nullptr && env[0] != '\0') return env;
  return "/tmp";
}

absl::StatusOr<UniqueFd> CreateCaptureFile(const std::string& dir) {
  UniqueFd fd(RetryOnEintr([&] {
    return ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  }));
  if (fd.valid()) return fd;
  // Filesystems without O_TMPFILE answer EOPNOTSUPP (or EISDIR on old kernels).
  if (errno != EOPNOTSUPP && errno != EISDIR) {
    return ErrnoStatus(absl::StrCat("temp dir '", dir, "'"));
  }
  std::string path = absl::StrCat(dir, "/parallel-XXXXXX");
  fd.reset(::mkostemp(path.data(), O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("temp dir '", dir, "'"));
  ::unlink(path.c_str());
  return fd;
}

absl::Status CheckTempDir(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("temp dir '", dir, "'"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("temp dir '", dir, "': Not a directory"));
  }
  return CreateCaptureFile(dir).status();
}

UniqueFd ReopenAt(int fd, uint64_t offset) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  UniqueFd reopened(
      RetryOnEintr([&] { return ::open(path, O_RDWR | O_CLOEXEC); }));
  if (reopened.valid() &&
      ::lseek(reopened.get(), static_cast<off_t>(offset), SEEK_SET) < 0) {
    reopened.reset();
  }
  return reopened;
}

bool SupportsSparseFiles(const std::string& dir) {
  struct statfs fs;
  if (::statfs(dir.c_str(), &fs) != 0) return false;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case 0xEF53:      // ext2/3/4
    case 0x01021994:  // tmpfs
    case 0x58465342:  // xfs
    case 0x9123683E:  // btrfs
    case 0xF2F52010:  // f2fs
      return true;
    default:
      return false;
  }
}

absl::StatusOr<uint64_t> FileSize(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus("fstat capture file");
  return static_cast<uint64_t>(st.st_size);
}

absl::StatusOr<uint64_t> CopyRange(int from, uint64_t offset, uint64_t length,
                                   int to) {
  uint64_t copied = 0;
  while (copied < length) {
    off_t position = static_cast<off_t>(offset + copied);
    const size_t want = std::min(kMaxSendfileChunk, length - copied);
    const ssize_t n =
        RetryOnEintr([&] { return ::sendfile(to, from, &position, want); });
    if (n > 0) {
      copied += n;
      continue;
    }
    if (n == 0) break;  // end of file
    if (errno == EAGAIN) {
      if (absl::Status s = WaitWritable(to); !s.ok()) return s;
      continue;
    }
    if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
      // `to` does not take sendfile (e.g. opened with O_APPEND on some
      // filesystems); copy through a buffer instead.
      absl::StatusOr<uint64_t> rest =
          CopyWithReadWrite(from, offset + copied, length - copied, to);
      if (!rest.ok()) return rest.status();
      return copied + *rest;
    }
    return ErrnoStatus("sendfile replayed output");
  }
  return copied;
}

}  // namespace internal
}  // namespace parallel
