#include "parallel/internal/fd.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace parallel {
namespace internal {

void UniqueFd::reset(int fd) {
  // close() is not retried on EINTR: on Linux the descriptor is gone anyway.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

absl::Status ErrnoStatus(int error, absl::string_view what) {
  return absl::ErrnoToStatus(error, what);
}

absl::Status ErrnoStatus(absl::string_view what) {
  return ErrnoStatus(errno, what);
}

}  // namespace internal
}  // namespace parallel
