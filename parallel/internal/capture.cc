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
    if (const int error = WriteFully(to, buffer.data(), got); error != 0) {
      return ErrnoStatus(error, "write");
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
      WaitWritable(to);
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

absl::StatusOr<UniqueFd> SpillPool::Acquire() {
  if (!free_.empty()) {
    UniqueFd fd = std::move(free_.back());
    free_.pop_back();
    return fd;
  }
  return CreateCaptureFile(dir_);
}

void SpillPool::Release(UniqueFd fd, uint64_t used) {
  if (!fd.valid() || free_.size() >= kMaxPooled) return;
  // Small stale contents are never read (lengths are the parent's own
  // counts); large ones would hold disk space another step may need.
  if (used > kTruncateAbove && ::ftruncate(fd.get(), 0) != 0) return;
  free_.push_back(std::move(fd));
}

void SpillPool::AppendFds(std::vector<int>* fds) const {
  for (const UniqueFd& fd : free_) fds->push_back(fd.get());
}

absl::Status MakeCapturePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) {
    const int error = errno;
    if (error == EMFILE || error == ENFILE) {
      return absl::ResourceExhaustedError("pipe2: too many open files");
    }
    return ErrnoStatus(error, "pipe2");
  }
  read_end->reset(ends[0]);
  write_end->reset(ends[1]);
  // Only the parent's end: the child's writes block as on any pipe.
  if (::fcntl(ends[0], F_SETFL, O_NONBLOCK) != 0) {
    read_end->reset();
    write_end->reset();
    return ErrnoStatus("fcntl O_NONBLOCK");
  }
  return absl::OkStatus();
}

absl::StatusOr<StreamCapture> StreamCapture::Open(UniqueFd* write_end) {
  StreamCapture capture;
  if (absl::Status status = MakeCapturePipe(&capture.owned_pipe_, write_end);
      !status.ok()) {
    return status;
  }
  capture.pipe_ = capture.owned_pipe_.get();
  return capture;
}

StreamCapture StreamCapture::Borrow(int read_end) {
  StreamCapture capture;
  capture.pipe_ = read_end;
  return capture;
}

void StreamCapture::DetachPipe() {
  pipe_ = -1;
  owned_pipe_.reset();
}

void StreamCapture::Append(uint64_t n) {
  if (copy_.valid()) {
    absl::StatusOr<uint64_t> copied = CopyRange(file_, end_, n, copy_.get());
    if (!copied.ok() || *copied != n) {
      copy_error_ = !copied.ok() && errno != 0 ? errno : EIO;
      copy_.reset();
    }
  }
  end_ += n;
  total_ += n;
}

void StreamCapture::DropPipe() {
  // Read and forget, so a writer is never blocked by a spill that failed.
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = RetryOnEintr(
        [&] { return ::read(pipe_, buffer, sizeof(buffer)); });
    if (n > 0) {
      total_ += n;
      continue;
    }
    if (n == 0) DetachPipe();
    return;
  }
}

void StreamCapture::Fail(int error) {
  error_ = error;
  // What was kept is given up too: the step fails (OutputLost) anyway, and
  // on a full disk its bytes are what the other steps need.
  if (file_ >= 0 && file_ == spill_.get() && ::ftruncate(file_, 0) == 0) {
    floor_ = begin_ = end_ = 0;
  }
  DropPipe();
}

bool StreamCapture::EnsureFile(SpillPool& pool) {
  if (file_ >= 0) return true;
  errno = 0;
  absl::StatusOr<UniqueFd> spill = pool.Acquire();
  if (!spill.ok()) {
    error_ = errno != 0 ? errno : EIO;
    return false;
  }
  spill_ = *std::move(spill);
  file_ = spill_.get();
  floor_ = begin_ = end_ = 0;
  return true;
}

void StreamCapture::Drain(SpillPool& pool, uint64_t budget) {
  if (pipe_ < 0) return;
  if (error_ != 0) return DropPipe();
  if (file_ < 0) {
    // A file is taken only once there is a byte to keep: a silent step
    // costs none, and finding that out costs one read. The read end is
    // non-blocking.
    char buffer[1 << 12];
    const ssize_t n =
        RetryOnEintr([&] { return ::read(pipe_, buffer, sizeof(buffer)); });
    if (n == 0) DetachPipe();  // every writer closed it
    if (n <= 0) return;
    if (!EnsureFile(pool)) return DropPipe();
    if (const int error = WriteFully(file_, buffer, n, end_); error != 0) {
      return Fail(error);
    }
    Append(n);
  }
  uint64_t moved = 0;
  while (moved < budget) {
    loff_t offset = static_cast<loff_t>(end_);
    const ssize_t n = RetryOnEintr([&] {
      return ::splice(pipe_, nullptr, file_, &offset, 1 << 20,
                      SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    });
    if (n > 0) {
      Append(static_cast<uint64_t>(n));
      moved += n;
      continue;
    }
    if (n == 0) {
      DetachPipe();  // every writer closed it
      return;
    }
    if (errno == EAGAIN) return;  // empty for now
    return Fail(errno);
  }
}

void StreamCapture::Close(SpillPool& pool, bool known_empty) {
  // Bytes written before the child ended (or, for a borrowed pipe, before
  // it reported the input done) are all in the pipe by now; a writer that
  // escaped loses what it writes later.
  if (!known_empty) Drain(pool, ~uint64_t{0});
  DetachPipe();
}

void StreamCapture::Consume(uint64_t n) {
  begin_ += std::min(n, pending());
  if (begin_ == end_ && end_ > kRewindAbove && file_ == spill_.get() &&
      spill_.valid()) {
    // Everything replayed: write from the start again, so a long-running
    // head step needs only kRewindAbove of disk, not its whole output.
    // Without the truncation the file is simply overwritten from 0 (bytes
    // past end_ are never read); the truncation only gives the space back.
    rewound_tail_ = Tail();
    begin_ = end_ = 0;
    if (::ftruncate(spill_.get(), 0) != 0) return;
  }
}

std::string StreamCapture::Tail() const {
  const uint64_t from =
      std::max(floor_, end_ > kTailBytes ? end_ - kTailBytes : 0);
  std::string tail;
  if (file_ >= 0 && end_ > from) {
    // The spool holds other steps' bytes before this one's begin.
    tail.resize(end_ - from);
    const ssize_t got = RetryOnEintr(
        [&] { return ::pread(file_, tail.data(), tail.size(), from); });
    tail.resize(got > 0 ? got : 0);
  }
  if (tail.size() < kTailBytes && !rewound_tail_.empty()) {
    const size_t keep =
        std::min<size_t>(rewound_tail_.size(), kTailBytes - tail.size());
    tail.insert(0, rewound_tail_.substr(rewound_tail_.size() - keep));
  }
  if (tail.size() < total_) {
    // Cut: start on a UTF-8 character, not inside one (at most 3 bytes of
    // a multi-byte character are dropped; other bytes are left as they are).
    size_t skip = 0;
    while (skip < 3 && skip < tail.size() &&
           (static_cast<unsigned char>(tail[skip]) & 0xC0) == 0x80) {
      ++skip;
    }
    tail.erase(0, skip);
  }
  return tail;
}

void StreamCapture::MoveTo(int spool, uint64_t offset, SpillPool& pool) {
  const uint64_t length = pending();
  Release(pool);
  file_ = spool;
  floor_ = offset;
  begin_ = offset;
  end_ = offset + length;
}

void StreamCapture::Release(SpillPool& pool) {
  if (file_ == spill_.get()) file_ = -1;
  if (spill_.valid()) pool.Release(std::move(spill_), end_);
}

void StreamCapture::AppendFds(std::vector<int>* fds) const {
  if (pipe_ >= 0) fds->push_back(pipe_);
  if (spill_.valid()) fds->push_back(spill_.get());
  if (copy_.valid()) fds->push_back(copy_.get());
}

}  // namespace internal
}  // namespace parallel
