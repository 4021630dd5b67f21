#include "tools/jobserver.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tools {

absl::StatusOr<std::unique_ptr<JobserverClient>> JobserverClient::FromMakeflags(
    absl::string_view makeflags) {
  // The last --jobserver-auth (or make 4.1's --jobserver-fds) wins.
  absl::string_view auth;
  for (absl::string_view word :
       absl::StrSplit(makeflags, ' ', absl::SkipEmpty())) {
    for (absl::string_view flag : {"--jobserver-auth=", "--jobserver-fds="}) {
      if (absl::StartsWith(word, flag)) auth = word.substr(flag.size());
    }
  }
  if (auth.empty()) return nullptr;

  if (absl::ConsumePrefix(&auth, "fifo:")) {
    const std::string path(auth);
    // O_RDWR: never blocks on open, and keeps the fifo usable for writing.
    const int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      return absl::ErrnoToStatus(errno,
                                 absl::StrCat("jobserver fifo '", path, "'"));
    }
    return std::unique_ptr<JobserverClient>(new JobserverClient(fd, fd, true));
  }

  std::vector<absl::string_view> fds = absl::StrSplit(auth, ',');
  int read_fd = -1;
  int write_fd = -1;
  if (fds.size() != 2 || !absl::SimpleAtoi(fds[0], &read_fd) ||
      !absl::SimpleAtoi(fds[1], &write_fd) || read_fd < 0 || write_fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed jobserver in MAKEFLAGS: '", auth, "'"));
  }
  if (::fcntl(read_fd, F_GETFD) == -1 || ::fcntl(write_fd, F_GETFD) == -1) {
    return nullptr;  // make did not pass the pipe to this recipe
  }
  // A descriptor of our own for the read side, so that O_NONBLOCK does not
  // leak into make's (and every sibling's) shared file description.
  const int own_read = ::open(absl::StrCat("/proc/self/fd/", read_fd).c_str(),
                              O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (own_read < 0) {
    return absl::ErrnoToStatus(errno, "cannot reopen the jobserver pipe");
  }
  return std::unique_ptr<JobserverClient>(
      new JobserverClient(own_read, write_fd, false));
}

JobserverClient::~JobserverClient() {
  while (!tokens_.empty()) Release();
  ::close(read_fd_);
  if (own_write_ && write_fd_ != read_fd_) ::close(write_fd_);
}

bool JobserverClient::TryAcquire() {
  char token;
  ssize_t n;
  do {
    n = ::read(read_fd_, &token, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) return false;
  tokens_.push_back(token);
  return true;
}

void JobserverClient::Release() {
  if (tokens_.empty()) return;
  const char token = tokens_.back();
  ssize_t n;
  do {
    n = ::write(write_fd_, &token, 1);
  } while (n < 0 && errno == EINTR);
  tokens_.pop_back();
}

}  // namespace tools
