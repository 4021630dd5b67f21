#include "parallel/options.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace parallel {
namespace {

bool IsOpenFd(int fd) { return fd >= 0 && ::fcntl(fd, F_GETFD) != -1; }

}  // namespace

absl::Status ValidateOptions(const ParallelOptions& options) {
  if (options.max_parallel < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_parallel must be >= 0 (0 = all at once), got ",
                     options.max_parallel));
  }
  return ValidateOptions(static_cast<const ProcessOptions&>(options));
}

absl::Status ValidateOptions(const ProcessOptions& options) {
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout must be positive, got ",
                     absl::FormatDuration(options.timeout)));
  }
  if (options.silent_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("silent_timeout must be positive, got ",
                     absl::FormatDuration(options.silent_timeout)));
  }
  if (!IsOpenFd(options.output_fd)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output_fd ", options.output_fd, " is not an open file descriptor"));
  }
  if (!options.combine_stderr && !IsOpenFd(options.error_fd)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "error_fd ", options.error_fd, " is not an open file descriptor"));
  }
  if (!options.trace_file.empty()) {
    const std::string& path = options.trace_file;
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : path.substr(0, slash);
    if (::access(dir.c_str(), W_OK) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("trace_file ", path, ": cannot write in '", dir,
                       "': ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace parallel
