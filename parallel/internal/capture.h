// Capture files: where a child's stdout/stderr go, and the kernel copy that
// replays them.
//
// A capture file is an unlinked regular file in the temp directory, so output
// never passes through a pipe that can fill, never sits in the parent's heap,
// and disappears with its last descriptor whatever happens to the parent.
//
// Thread-safety: the functions are thread-compatible; they touch only the fds
// they are given.

#ifndef PARALLEL_INTERNAL_CAPTURE_H_
#define PARALLEL_INTERNAL_CAPTURE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/internal/fd.h"

namespace parallel {
namespace internal {

// `temp_dir` if non-empty, else $TMPDIR if set and non-empty, else "/tmp".
std::string ResolveTempDir(const std::string& temp_dir);

// Creates an unlinked, close-on-exec, read-write file in `dir` (O_TMPFILE, or
// mkostemp + unlink where the filesystem lacks it). Errors name `dir`.
absl::StatusOr<UniqueFd> CreateCaptureFile(const std::string& dir);

// Checks that capture files can be created in `dir`; the error names `dir` and
// the reason (missing, not a directory, read-only, ...).
absl::Status CheckTempDir(const std::string& dir);

// A second, independent open file description of the file behind `fd`
// (through /proc/self/fd), positioned at `offset`; invalid on failure.
UniqueFd ReopenAt(int fd, uint64_t offset);

// Whether files in `dir` can have holes that cost nothing (ext4, xfs, btrfs,
// tmpfs, f2fs: checked by filesystem type).
bool SupportsSparseFiles(const std::string& dir);

// Size of the file behind `fd`.
absl::StatusOr<uint64_t> FileSize(int fd);

// Copies bytes [offset, offset + length) of the file `from` to `to` with the
// kernel (sendfile), falling back to pread/write where sendfile cannot serve
// `to`. Waits for a non-blocking `to` to become writable. Returns the number of
// bytes copied, which is less than `length` only if the file is shorter.
absl::StatusOr<uint64_t> CopyRange(int from, uint64_t offset, uint64_t length,
                                   int to);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_CAPTURE_H_
