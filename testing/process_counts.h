// Test helpers: capturing replayed output into a file, and counting the
// resources a run must give back (fds, child processes, temp files).
//
//   parallel::testing::OutputFile out;
//   options.output_fd = out.fd();
//   parallel::RunParallelSteps(steps, options);
//   EXPECT_EQ(out.Contents(), "a\nb\n");
//
// Thread-safety: thread-compatible.

#ifndef TESTING_PROCESS_COUNTS_H_
#define TESTING_PROCESS_COUNTS_H_

#include <sys/types.h>

#include <string>
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

}  // namespace testing
}  // namespace parallel

#endif  // TESTING_PROCESS_COUNTS_H_
