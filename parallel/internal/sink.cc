#include "parallel/internal/sink.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"

namespace parallel {
namespace internal {
namespace {

constexpr uint64_t kMaxChunk = 1 << 20;

bool IsWouldBlock(int error) { return error == EAGAIN || error == EWOULDBLOCK; }

}  // namespace

SigpipeGuard::SigpipeGuard() {
  sigset_t pipe_only, old, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  was_blocked_ = sigismember(&old, SIGPIPE) == 1;
  sigpending(&pending);
  was_pending_ = sigismember(&pending, SIGPIPE) == 1;
}

SigpipeGuard::~SigpipeGuard() {
  sigset_t pipe_only, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  if (!was_pending_ && sigpending(&pending) == 0 &&
      sigismember(&pending, SIGPIPE) == 1) {
    const timespec zero = {0, 0};
    RetryOnEintr([&] { return ::sigtimedwait(&pipe_only, nullptr, &zero); });
  }
  if (!was_blocked_) ::pthread_sigmask(SIG_UNBLOCK, &pipe_only, nullptr);
}

Sink::Sink(int fd, std::string name)
    : fd_(fd), name_(std::move(name)), write_fd_(fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return;  // the first write reports it
  // The kernel copy only into a regular file or a device like /dev/null:
  // into a pipe (or a socket) sendfile queues references to the spill
  // file's pages, not copies, and a spill file is rewritten as soon as its
  // bytes count as written (reused from the pool, or rewound), before the
  // reader has read them.
  use_sendfile_ = S_ISREG(st.st_mode) || (S_ISCHR(st.st_mode) && !::isatty(fd));
  if (S_ISSOCK(st.st_mode)) {
    is_socket_ = true;
    return;
  }
  // Only a pipe raises SIGPIPE (sockets are written with MSG_NOSIGNAL).
  may_raise_sigpipe_ = S_ISFIFO(st.st_mode);
  if (S_ISFIFO(st.st_mode) || (S_ISCHR(st.st_mode) && ::isatty(fd))) {
    const std::string path = absl::StrCat("/proc/self/fd/", fd);
    own_.reset(RetryOnEintr([&] {
      return ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    }));
    // Without /proc (or with no reader left: ENXIO) the caller's fd is
    // written as it is; its first write tells what is wrong.
    if (own_.valid()) write_fd_ = own_.get();
  }
}

void Sink::Failed(int error) {
  if (IsWouldBlock(error)) {
    blocked_ = true;
    return;
  }
  error_ = error;
}

uint64_t Sink::Copy(int from, uint64_t offset, uint64_t length) {
  if (broken() || blocked_ || length == 0) return 0;
  if (!Flush()) return 0;
  std::optional<SigpipeGuard> guard;
  if (may_raise_sigpipe_) guard.emplace();
  uint64_t copied = 0;
  std::string& buffer = buffer_;
  while (copied < length && !blocked_ && !broken()) {
    const size_t want = std::min(kMaxChunk, length - copied);
    if (use_sendfile_) {
      off_t position = static_cast<off_t>(offset + copied);
      const ssize_t n = RetryOnEintr(
          [&] { return ::sendfile(write_fd_, from, &position, want); });
      if (n > 0) {
        copied += n;
        continue;
      }
      if (n == 0) break;  // the file is shorter
      if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
        use_sendfile_ = false;  // e.g. an O_APPEND file: through a buffer
        continue;
      }
      Failed(errno);
      break;
    }
    buffer.resize(std::min<size_t>(want, 1 << 16));
    const ssize_t got = RetryOnEintr([&] {
      return ::pread(from, buffer.data(), buffer.size(), offset + copied);
    });
    if (got <= 0) break;
    const size_t written = WriteSome(buffer.data(), static_cast<size_t>(got));
    copied += written;
    if (written < static_cast<size_t>(got)) break;
  }
  return copied;
}

size_t Sink::WriteSome(const char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = RetryOnEintr([&] {
      return is_socket_ ? ::send(write_fd_, data + done, size - done,
                                 MSG_DONTWAIT | MSG_NOSIGNAL)
                        : ::write(write_fd_, data + done, size - done);
    });
    if (n > 0) {
      done += n;
      continue;
    }
    Failed(n == 0 ? EIO : errno);
    break;
  }
  return done;
}

void Sink::GiveUp(int error) {
  if (error_ == 0) {
    error_ = error;
    given_up_ = true;
  }
  blocked_ = false;
  queued_.clear();
}

void Sink::Write(absl::string_view bytes) {
  queued_.append(bytes.data(), bytes.size());
  Flush();
}

bool Sink::Flush() {
  if (queued_.empty()) return true;
  if (broken()) {
    queued_.clear();
    return false;
  }
  if (blocked_) return false;
  std::optional<SigpipeGuard> guard;
  if (may_raise_sigpipe_) guard.emplace();
  const size_t written = WriteSome(queued_.data(), queued_.size());
  queued_.erase(0, written);
  if (broken()) queued_.clear();
  return queued_.empty();
}

}  // namespace internal
}  // namespace parallel
