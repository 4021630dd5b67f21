// ProcessPoolExecutor gives back everything it took: descriptors, child
// processes (workers, one-shot processes, what tasks started), temp files
// and its thread — after crashes, timeouts, cancels and every shutdown mode.

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/executor.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

using ::testing::IsEmpty;

int Crash(int) { std::abort(); }
int Throw(int) { throw std::runtime_error("x"); }
int Hang(int) {
  if (fork() == 0) pause();  // a grandchild, in the task's group
  pause();
  return 0;
}
int Quick(int i) { return i; }

TEST(ExecutorResources, NothingIsLeftBehind) {
  const std::string dir = testing::MakeTempDir();
  const int fds = testing::CountOpenFds();
  const ShutdownMode modes[] = {ShutdownMode::kWait,
                                ShutdownMode::kCancelPending,
                                ShutdownMode::kKillRunning};
  for (ShutdownMode mode : modes) {
    testing::OutputFile out;
    ExecutorOptions options;
    options.max_workers = 2;
    options.output_fd = out.fd();
    options.temp_dir = dir;
    options.max_tasks_per_worker = 3;
    ProcessPoolExecutor executor(options);
    std::vector<Future<int>> futures;
    futures.push_back(executor.Submit(Crash, 0));
    futures.push_back(executor.Submit(Throw, 1));
    TaskOptions short_task;
    short_task.timeout = absl::Milliseconds(200);
    futures.push_back(executor.Submit(short_task, Hang, 2));
    futures.push_back(executor.Submit(Hang, 3));
    futures.push_back(executor.Submit([](int i) { return i; }, 4));
    for (int i = 5; i < 20; ++i) futures.push_back(executor.Submit(Quick, i));
    futures[3].Cancel(CancelMode::kKillIfRunning);
    executor.Shutdown(mode);
  }
  EXPECT_EQ(testing::CountOpenFds(), fds);
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
  EXPECT_EQ(testing::CountDirEntries(dir), 0);
}

}  // namespace
}  // namespace parallel
