#include "parallel/internal/fd.h"

#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace parallel {
namespace internal {

void UniqueFd::reset(int fd) {
  // close() is not retried on EINTR: on Linux the descriptor is gone anyway.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

void WaitWritable(int fd) {
  pollfd pfd = {fd, POLLOUT, 0};
  RetryOnEintr([&] { return ::poll(&pfd, 1, -1); });
}

int WriteFully(int fd, const void* data, size_t size, int64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n =
        offset < 0 ? ::write(fd, p, size) : ::pwrite(fd, p, size, offset);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      if (offset >= 0) offset += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      WaitWritable(fd);
      continue;
    }
    return n == 0 ? EIO : errno;
  }
  return 0;
}

void AttachFds(msghdr* message, FdControl* control, const int* fds,
               size_t count) {
  message->msg_control = control->bytes;
  message->msg_controllen = CMSG_SPACE(sizeof(int) * count);
  cmsghdr* header = CMSG_FIRSTHDR(message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int) * count);
  ::memcpy(CMSG_DATA(header), fds, sizeof(int) * count);
}

int SendFully(int socket, const char* data, size_t size, const int* fds,
              size_t fd_count) {
  FdControl control = {};
  if (fd_count > kMaxSentFds) return EINVAL;
  while (size > 0 || fd_count > 0) {
    iovec iov = {const_cast<char*>(data), size};
    msghdr message = {};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    if (fd_count > 0) AttachFds(&message, &control, fds, fd_count);
    const ssize_t n = ::sendmsg(socket, &message, MSG_NOSIGNAL);
    if (n > 0 || (n == 0 && size == 0)) {
      data += n;
      size -= static_cast<size_t>(n);
      fd_count = 0;  // sent with the first byte
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      WaitWritable(socket);
      continue;
    }
    return n == 0 ? EIO : errno;
  }
  return 0;
}

absl::Status ErrnoStatus(int error, absl::string_view what) {
  return absl::ErrnoToStatus(error, what);
}

absl::Status ErrnoStatus(absl::string_view what) {
  return ErrnoStatus(errno, what);
}

}  // namespace internal
}  // namespace parallel
