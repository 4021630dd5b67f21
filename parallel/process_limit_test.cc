// Out of processes: fork() fails with EAGAIN while the caller's pids cgroup
// is full. A pids cgroup is the one limit that holds for root (RLIMIT_NPROC
// does not) and counts only the caller's own processes, so this test runs
// outside Bazel's sandbox, which hides /sys/fs/cgroup; it skips where no
// cgroup can be made.

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallel/parallel.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

using ::parallel::testing::Into;
using ::parallel::testing::OutputFile;

// A pids cgroup (v1) that lets its members have at most `max` processes;
// invalid() where there is none to make (no pids controller, a read-only
// /sys/fs/cgroup, not root).
class PidsCgroup {
 public:
  explicit PidsCgroup(int max)
      : dir_(absl::StrCat("/sys/fs/cgroup/pids/parallel_test_", getpid())) {
    if (mkdir(dir_.c_str(), 0755) != 0) return;
    made_ = true;
    std::ofstream(dir_ + "/pids.max") << max;
  }
  ~PidsCgroup() {
    // Its last members may still be exiting.
    for (int i = 0; made_ && i < 200 && rmdir(dir_.c_str()) != 0; ++i) {
      usleep(10000);
    }
  }
  bool valid() const { return made_; }
  // Moves the calling process in.
  bool Join() const {
    std::ofstream procs(dir_ + "/cgroup.procs");
    procs << getpid() << std::flush;
    return procs.good();
  }

 private:
  const std::string dir_;
  bool made_ = false;
};

TEST(ProcessLimit, OutOfProcessesStartsFewerAtOnceAndEachStepRunsItsOwnBody) {
  // fork() fails with EAGAIN beyond the cgroup's limit: the run goes on with
  // the steps it has, and a step whose fork failed starts again later with
  // its own closure (the engine moves each body out for its fork and back).
  PidsCgroup cgroup(/*max=*/5);  // the caller, the watchdog, three steps
  if (!cgroup.valid()) GTEST_SKIP() << "no pids cgroup can be made here";
  OutputFile out;
  const pid_t caller = fork();
  ASSERT_GE(caller, 0);
  if (caller == 0) {
    if (!cgroup.Join()) _exit(2);
    std::vector<std::function<void()>> steps;
    for (int i = 0; i < 24; ++i) {
      steps.push_back([i] {
        usleep(20000);
        std::printf("step %d\n", i);
      });
    }
    ParallelOptions options = Into(out);
    options.max_parallel = 8;
    try {
      RunParallelSteps(std::move(steps), options);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      _exit(1);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(caller, &status, 0), caller);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::string expected;
  for (int i = 0; i < 24; ++i) absl::StrAppend(&expected, "step ", i, "\n");
  EXPECT_EQ(out.Contents(), expected);
}

}  // namespace
}  // namespace parallel
