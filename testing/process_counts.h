// Test helpers: capturing replayed output into a file or a pipe, counting
// the resources a run must give back (fds, child processes, temp files), and
// limiting file sizes to provoke EFBIG.
//
//   parallel::testing::OutputFile out;
//   options.output_fd = out.fd();
//   parallel::RunParallelSteps(steps, options);
//   EXPECT_EQ(out.Contents(), "a\nb\n");
//
// Thread-safety: thread-compatible.

#ifndef TESTING_PROCESS_COUNTS_H_
#define TESTING_PROCESS_COUNTS_H_

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "parallel/options.h"

namespace parallel {
namespace testing {

// An anonymous file to use as output_fd / error_fd; read back with Contents().
class OutputFile {
 public:
  OutputFile();
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  int fd() const { return fd_; }
  std::string Contents() const;

 private:
  int fd_;
};

// Writes all of `text` to fd 1 with write(2), unbuffered (aborts on error):
// what a step prints when the test needs exact bytes.
void Say(const std::string& text);

// Default options, with replayed output going into `out`.
ParallelOptions Into(const OutputFile& out);

// Descriptors open in this process.
int CountOpenFds();
// Live or zombie children of this process.
std::vector<pid_t> ChildPids();
// Entries in `dir`.
int CountDirEntries(const std::string& dir);
// A fresh, empty directory under $TEST_TMPDIR (or /tmp).
std::string MakeTempDir();
// Whether a process with this pid exists (zombies count).
bool ProcessExists(pid_t pid);

// A pipe to use as a replay target with no size limit: a thread drains its
// read end into a string once Start() is called.
class PipeReader {
 public:
  PipeReader();
  ~PipeReader();
  PipeReader(const PipeReader&) = delete;
  PipeReader& operator=(const PipeReader&) = delete;

  int write_end() const { return write_end_; }
  void Start();
  // Makes the write end's reader go away (writes then fail with EPIPE).
  void CloseReadEnd();
  // Closes the write end, waits for the thread, returns what it read.
  std::string Finish();

 private:
  int read_end_ = -1;
  int write_end_ = -1;
  std::thread thread_;
  std::string text_;
};

// While it lives: this process's files cannot grow beyond `bytes`
// (RLIMIT_FSIZE, soft limit) and SIGXFSZ is ignored, so writes past the
// limit fail with EFBIG — as they would with ENOSPC on a full disk.
class ScopedFileSizeLimit {
 public:
  explicit ScopedFileSizeLimit(uint64_t bytes);
  ~ScopedFileSizeLimit();
  ScopedFileSizeLimit(const ScopedFileSizeLimit&) = delete;
  ScopedFileSizeLimit& operator=(const ScopedFileSizeLimit&) = delete;

 private:
  struct sigaction saved_action_;
  struct rlimit saved_limit_;
};

}  // namespace testing
}  // namespace parallel

#endif  // TESTING_PROCESS_COUNTS_H_
