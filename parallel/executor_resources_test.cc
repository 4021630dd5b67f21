// ProcessPoolExecutor gives back everything it took: descriptors, child
// processes (workers, one-shot processes, what tasks started), temp files
// and its thread — after crashes, timeouts, cancels and every shutdown mode;
// its tasks' output arrives whole, in submit or completion order; and it
// recycles workers that ran their quota of tasks or grew too big.

#include <signal.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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
int Pid() { return getpid(); }

ExecutorOptions Into(const testing::OutputFile& out, int workers) {
  ExecutorOptions options;
  options.output_fd = out.fd();
  options.max_workers = workers;
  return options;
}

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

// 64 MiB from one task arrive whole and in order, behind a task that is
// still running when it is written (so it waits on disk, not in memory).
TEST(ExecutorResources, HugeOutputIsKeptWhole) {
  testing::OutputFile out;
  ExecutorOptions options;
  options.max_workers = 2;
  options.output_fd = out.fd();
  {
    ProcessPoolExecutor executor(options);
    executor.Submit(+[](int) {
      usleep(300000);
      testing::Say("first\n");
      return 0;
    }, 0);
    executor.Submit(+[](int) {
      const std::string chunk(1 << 20, 'x');
      for (int i = 0; i < 64; ++i) testing::Say(chunk);
      testing::Say("end\n");
      return 0;
    }, 1);
  }
  const std::string got = out.Contents();
  ASSERT_EQ(got.size(), 6 + (size_t{64} << 20) + 4);
  EXPECT_EQ(got.substr(0, 6), "first\n");
  EXPECT_EQ(got.find_first_not_of('x', 6), got.size() - 4);
  EXPECT_EQ(got.substr(got.size() - 4), "end\n");
}

// Each task begins, sleeps (later tasks less) and ends: `order` decides
// whose block comes first.
std::string RunSleepers(ReplayOrder order) {
  testing::OutputFile out;
  ExecutorOptions options;
  options.max_workers = 4;
  options.output_fd = out.fd();
  options.replay_order = order;
  {
    ProcessPoolExecutor executor(options);
    for (int i = 0; i < 4; ++i) {
      executor.Submit(
          [](int n) {
            testing::Say(absl::StrCat("begin ", n, "\n"));
            usleep((4 - n) * 150000);  // later tasks end first
            testing::Say(absl::StrCat("end ", n, "\n"));
          },
          i);
    }
  }
  return out.Contents();
}

TEST(ExecutorOutput, ReplayedPerTaskInSubmitOrder) {
  EXPECT_EQ(RunSleepers(ReplayOrder::kSubmit),
            "begin 0\nend 0\nbegin 1\nend 1\nbegin 2\nend 2\nbegin 3\nend 3\n");
}

TEST(ExecutorOutput, ReplayedPerTaskInCompletionOrderWhenAsked) {
  EXPECT_EQ(RunSleepers(ReplayOrder::kCompletion),
            "begin 3\nend 3\nbegin 2\nend 2\nbegin 1\nend 1\nbegin 0\nend 0\n");
}

TEST(ExecutorResources, MaxTasksPerWorkerRecyclesWorkers) {
  testing::OutputFile out;
  ExecutorOptions options = Into(out, 2);
  options.max_tasks_per_worker = 2;
  ProcessPoolExecutor executor(options);
  std::map<int, int> per_pid;
  for (absl::StatusOr<int>& pid :
       executor.Map(+[](int) { return static_cast<int>(getpid()); },
                    std::vector<int>(12, 0))) {
    ++per_pid[*pid];
  }
  EXPECT_GE(per_pid.size(), 6u);
  for (const auto& [pid, tasks] : per_pid) EXPECT_LE(tasks, 2) << pid;
}

// This process's resident set, from /proc/self/status (0 if unreadable).
int64_t OwnRss() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    int64_t kib = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %" SCNd64 " kB", &kib) == 1) {
      return kib << 10;
    }
  }
  return 0;
}

TEST(ExecutorResources, AWorkerOverTheRssLimitIsReplaced) {
  testing::OutputFile out;
  // A fresh worker's RSS counts the pages it shares with this process (and
  // a sanitizer's shadow memory), so it depends on what ran before: the
  // limit is set 96 MiB above what a probe worker measures, and the task
  // that must cross it keeps 256 MiB.
  int64_t fresh = 0;
  {
    ProcessPoolExecutor probe(Into(out, 1));
    fresh = *probe.Submit(OwnRss).Get();
  }
  ASSERT_GT(fresh, 0);
  ExecutorOptions options = Into(out, 1);
  options.max_worker_rss_bytes = fresh + (int64_t{96} << 20);
  constexpr size_t kLeak = size_t{256} << 20;
  ProcessPoolExecutor executor(options);
  const int small = *executor.Submit(Pid).Get();
  EXPECT_EQ(*executor.Submit(Pid).Get(), small);  // under the limit: kept
  const int leaker = *executor.Submit(+[] {
    static std::vector<char>* leak = new std::vector<char>(kLeak, 1);
    // The memory escapes: an optimizer may not drop the allocation.
    asm volatile("" : : "r"(leak->data()) : "memory");
    return static_cast<int>(getpid());
  }).Get();
  EXPECT_EQ(leaker, small);
  EXPECT_NE(*executor.Submit(Pid).Get(), leaker);
}

}  // namespace
}  // namespace parallel
