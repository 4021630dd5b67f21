// Capture: where a child's stdout and stderr go, and where they wait until
// their turn to be replayed.
//
// A child writes into a pipe (fds 1 and 2 are the same pipe when the streams
// are combined, two pipes when not). The parent moves the bytes with splice()
// — no user-space copy, nothing in the parent's heap — into a spill file: an
// unlinked temp file that only the parent writes. Because the child never
// holds the spill file:
//  - reopening /dev/stderr or /proc/self/fd/1 reaches the same pipe (as on a
//    terminal), so `echo x >/dev/stderr` cannot truncate or overwrite the
//    step's output, and seeking fails as it does on any pipe;
//  - the parent knows every byte's count exactly, so a reused spill file's
//    stale bytes are never read, and a big file is truncated before reuse;
//  - the space a run needs on disk is the output not yet replayed: the live
//    head's file is rewound once everything in it has been replayed.
//
//   SpillPool pool(temp_dir);
//   absl::StatusOr<StreamCapture> capture = StreamCapture::Open(&write_end);
//   ... child writes into write_end ...
//   capture->Drain(pool);               // whenever the pipe is readable
//   CopyRange(capture->file(), capture->begin(), ..., output_fd);
//
// Thread-safety: thread-compatible.

#ifndef PARALLEL_INTERNAL_CAPTURE_H_
#define PARALLEL_INTERNAL_CAPTURE_H_

#include <cstdint>
#include <string>
#include <vector>

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

// A pipe for a child's output: *read_end (the parent's) is non-blocking,
// both ends close-on-exec.
absl::Status MakeCapturePipe(UniqueFd* read_end, UniqueFd* write_end);

// Size of the file behind `fd`.
absl::StatusOr<uint64_t> FileSize(int fd);

// Copies bytes [offset, offset + length) of the file `from` to `to` with the
// kernel (sendfile), falling back to pread/write where sendfile cannot serve
// `to`; blocks until done. Returns the number of bytes copied, which is less
// than `length` only if the file is shorter.
absl::StatusOr<uint64_t> CopyRange(int from, uint64_t offset, uint64_t length,
                                   int to);

// Spill files of one run, reused: creating one costs ~50us on ext4. A file
// given back with more than kTruncateAbove bytes is truncated first, so the
// pool never holds much stale data on disk.
class SpillPool {
 public:
  static constexpr uint64_t kTruncateAbove = 64 * 1024;
  static constexpr size_t kMaxPooled = 16;

  explicit SpillPool(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }
  absl::StatusOr<UniqueFd> Acquire();
  // `used`: how far the file was written.
  void Release(UniqueFd fd, uint64_t used);
  // The pooled descriptors (children close them).
  void AppendFds(std::vector<int>* fds) const;

 private:
  const std::string dir_;
  std::vector<UniqueFd> free_;
};

// One captured stream (a step's stdout, its stderr, or both combined).
class StreamCapture {
 public:
  // When the live head's file holds more than this and all of it has been
  // replayed, it is rewound to offset 0.
  static constexpr uint64_t kRewindAbove = 1 << 20;
  // How much of a stream's end is kept for failure reports.
  static constexpr uint64_t kTailBytes = 4096;

  StreamCapture() = default;
  StreamCapture(StreamCapture&&) = default;
  StreamCapture& operator=(StreamCapture&&) = default;

  // Makes the pipe; *write_end is the child's end (close-on-exec).
  static absl::StatusOr<StreamCapture> Open(UniqueFd* write_end);
  // Captures from a pipe that outlives it (a task runner's worker reuses its
  // pipes, worker_pool.h): Close() and EOF stop reading but never close
  // `read_end`, which must be non-blocking (MakeCapturePipe).
  static StreamCapture Borrow(int read_end);

  // The pipe's read end while it may still give bytes; -1 after EOF/Close.
  int pipe_fd() const { return pipe_; }
  // Moves what the pipe holds now into the spill file, without blocking (at
  // most `budget` bytes, so one chatty child cannot starve the loop). Sets
  // pipe_fd() to -1 when every writer has closed the pipe. An error (the spill
  // file cannot be created or written: ENOSPC, EFBIG, EMFILE) is latched in
  // error(), what was kept is given up (the space is what other steps need
  // on a full disk; the step fails as parallel::OutputLost), and later bytes
  // are read and dropped so the child never blocks.
  void Drain(SpillPool& pool, uint64_t budget = 4 << 20);
  // No more bytes will be taken: drains what is there (unless the producer
  // saw its pipe empty after its last write: `known_empty`) and closes the
  // pipe.
  void Close(SpillPool& pool, bool known_empty = false);
  // Every byte captured from now on is also appended to `copy` (a file:
  // GNU parallel's --results), as it arrives.
  void KeepCopy(UniqueFd copy) { copy_ = std::move(copy); }
  // errno of the first spill failure, or 0.
  int error() const { return error_; }
  // errno of the first failure to write the copy (then no more is
  // written to it), or 0.
  int copy_error() const { return copy_error_; }

  // Where the unreplayed bytes are: [begin(), end()) of file().
  int file() const { return file_; }
  uint64_t begin() const { return begin_; }
  uint64_t end() const { return end_; }
  uint64_t pending() const { return end_ - begin_; }
  // Bytes captured in all.
  uint64_t total() const { return total_; }
  // `n` bytes from begin() were replayed (or dropped).
  void Consume(uint64_t n);
  // For tagging: whether the next replayed byte starts a line.
  bool at_line_start = true;

  // The last kTailBytes bytes captured (read before they can be rewound).
  std::string Tail() const;

  // Moves the unreplayed bytes to [offset, offset + pending()) of `spool`
  // (copied by the caller) and gives the own spill file back to the pool.
  void MoveTo(int spool, uint64_t offset, SpillPool& pool);
  // Gives the spill file back to the pool.
  void Release(SpillPool& pool);
  // Descriptors this capture holds.
  void AppendFds(std::vector<int>* fds) const;

 private:
  void Append(uint64_t n);
  // Latches `error`, gives up what was kept, and drops the rest.
  void Fail(int error);
  // Takes a spill file if there is none; false (error() set) if it cannot.
  bool EnsureFile(SpillPool& pool);
  void DropPipe();
  // Stops reading the pipe, closing it if it is owned.
  void DetachPipe();

  int pipe_ = -1;
  UniqueFd owned_pipe_;
  UniqueFd spill_;      // own spill file, acquired on first bytes
  int file_ = -1;       // spill_, or a spool file not owned
  uint64_t floor_ = 0;  // where this stream's bytes start in file_
  uint64_t begin_ = 0;
  uint64_t end_ = 0;
  uint64_t total_ = 0;
  int error_ = 0;
  UniqueFd copy_;
  int copy_error_ = 0;
  std::string rewound_tail_;  // the end of what a rewind discarded
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_CAPTURE_H_
