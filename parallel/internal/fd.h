// Owning file descriptors, errno to Status, and the one EINTR-retry helper.
//
// Thread-safety: UniqueFd is a value type; distinct objects may be used from
// distinct threads.

#ifndef PARALLEL_INTERNAL_FD_H_
#define PARALLEL_INTERNAL_FD_H_

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace parallel {
namespace internal {

// Move-only owner of a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Calls `fn` until it does not fail with EINTR. The only place that retries.
template <typename Fn>
auto RetryOnEintr(Fn fn) -> decltype(fn()) {
  decltype(fn()) result;
  do {
    result = fn();
  } while (result == -1 && errno == EINTR);
  return result;
}

// Blocks (in poll, EINTR retried) until `fd` can take bytes or has failed;
// the next write tells which. Async-signal-safe.
void WaitWritable(int fd);

// Writes all `size` bytes to `fd`, retrying EINTR and short writes; waits in
// poll() while a non-blocking `fd` is full. Returns 0, or the errno of the
// write that failed (EPIPE, ENOSPC, ...). With `offset` >= 0 it writes there
// (pwrite) and leaves the file offset alone. The only write-all loop of the
// library. Async-signal-safe.
int WriteFully(int fd, const void* data, size_t size, int64_t offset = -1);

// At most this many descriptors go with one sendmsg (SCM_RIGHTS) here.
inline constexpr size_t kMaxSentFds = 4;
// Room for their control message.
struct FdControl {
  alignas(cmsghdr) char bytes[CMSG_SPACE(sizeof(int) * kMaxSentFds)];
};
// Attaches `fds` (`count` <= kMaxSentFds) to `message`, in `control`.
void AttachFds(msghdr* message, FdControl* control, const int* fds,
               size_t count);

// Sends all of `bytes` on a stream socket, `fds` (if any) attached to the
// first part (SCM_RIGHTS); never raises SIGPIPE; waits in poll() while a
// non-blocking socket is full. Returns 0 or the errno of the failed send.
int SendFully(int socket, const char* data, size_t size, const int* fds,
              size_t fd_count);

// A Status for the current errno: "<what>: <strerror>".
absl::Status ErrnoStatus(absl::string_view what);
absl::Status ErrnoStatus(int error, absl::string_view what);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_FD_H_
