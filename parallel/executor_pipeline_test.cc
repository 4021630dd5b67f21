// ProcessPoolExecutor sends each worker several tasks at once (a deep
// pipeline, for speed) without the cost pipelines usually have: a worker
// that runs out of work takes the tasks another worker holds but has not
// started, so none waits behind a long task while a worker idles; a task
// taken that way runs exactly once; and Cancel(kIfPending) stays exact
// while tasks move between workers.

#include <unistd.h>

#include <atomic>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/executor.h"
#include "parallel/sync.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

// Shared with the workers: created before the executor forks them.
Event* gate = nullptr;
Array<int>* runs = nullptr;  // how often each input ran

// Blocks until the test opens the gate; returns its pid.
int WaitForGate(int) {
  gate->Wait(absl::Seconds(60));
  return getpid();
}

// Counts its run; returns its pid.
int CountRun(int i) {
  std::lock_guard<Lock> hold(runs->get_lock());
  ++runs->data()[i];
  return getpid();
}

// Counts its run; every 97th takes a while, so that the workers' queues
// grow uneven and idle workers keep taking from busy ones.
int CountRunUneven(int i) {
  if (i % 97 == 0) absl::SleepFor(absl::Milliseconds(15));
  return CountRun(i);
}

class ExecutorPipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    gate_ = std::make_unique<Event>();
    runs_ = std::make_unique<Array<int>>(4000, 0);
    gate = gate_.get();
    runs = runs_.get();
  }
  void TearDown() override {
    gate = nullptr;
    runs = nullptr;
  }
  ExecutorOptions Options() {
    ExecutorOptions options;
    options.max_workers = 2;
    options.output_fd = out_.fd();
    return options;
  }

  testing::OutputFile out_;
  std::unique_ptr<Event> gate_;
  std::unique_ptr<Array<int>> runs_;
};

// Without the taking, the tasks sent to the blocked worker after its long
// task would wait for the gate, which opens only once they are all done:
// the WaitFor below would fail after 60 s.
TEST_F(ExecutorPipeline, AnIdleWorkerTakesWhatWaitsBehindALongTask) {
  ProcessPoolExecutor executor(Options());
  Future<int> blocked = executor.Submit(WaitForGate, 0);
  std::vector<Future<int>> quick;
  for (int i = 0; i < 40; ++i) quick.push_back(executor.Submit(CountRun, i));
  std::set<int> pids;
  for (Future<int>& future : quick) {
    ASSERT_TRUE(future.WaitFor(absl::Seconds(60)));
    absl::StatusOr<int> pid = future.Get();
    ASSERT_TRUE(pid.ok()) << pid.status();
    pids.insert(*pid);
  }
  EXPECT_FALSE(blocked.done());
  gate_->Set();
  absl::StatusOr<int> blocked_pid = blocked.Get();
  ASSERT_TRUE(blocked_pid.ok()) << blocked_pid.status();
  // Every quick task ran in the other worker, once.
  EXPECT_THAT(pids, ::testing::ElementsAre(::testing::Ne(*blocked_pid)));
  for (int i = 0; i < 40; ++i) EXPECT_EQ(runs_->Load(i), 1) << "input " << i;
  executor.Shutdown();
}

TEST_F(ExecutorPipeline, EveryInputRunsOnceWhileWorkersTakeFromEachOther) {
  ProcessPoolExecutor executor(Options());
  std::vector<int> inputs(3000);
  for (int i = 0; i < 3000; ++i) inputs[i] = i;
  std::vector<absl::StatusOr<int>> pids = executor.Map(CountRunUneven, inputs);
  ASSERT_EQ(pids.size(), inputs.size());
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(pids[i].ok()) << "input " << i << ": " << pids[i].status();
    ASSERT_EQ(runs_->Load(i), 1) << "input " << i;
  }
  executor.Shutdown();
}

// Cancels race the taking: a cancelled task never ran, a task that ran is
// not cancelled, and each ran at most once. 100 rounds.
TEST_F(ExecutorPipeline, CancelIsExactWhileTasksMoveBetweenWorkers) {
  constexpr int kTasks = 30;
  ProcessPoolExecutor executor(Options());
  int cancelled_total = 0;
  for (int round = 0; round < 100; ++round) {
    gate_->Clear();
    for (int i = 0; i < kTasks; ++i) runs_->Store(i, 0);
    Future<int> blocked = executor.Submit(WaitForGate, 0);
    std::vector<Future<int>> futures;
    for (int i = 0; i < kTasks; ++i) {
      futures.push_back(executor.Submit(CountRun, i));
    }
    std::thread canceller([&] {
      for (int i = kTasks - 1; i >= 0; i -= 2) futures[i].Cancel();
    });
    canceller.join();
    for (int i = 0; i < kTasks; ++i) {
      ASSERT_TRUE(futures[i].WaitFor(absl::Seconds(60))) << "task " << i;
      if (futures[i].cancelled()) {
        ++cancelled_total;
        EXPECT_EQ(runs_->Load(i), 0) << "round " << round << " task " << i;
        EXPECT_EQ(futures[i].Get().status().code(),
                  absl::StatusCode::kCancelled);
      } else {
        EXPECT_EQ(runs_->Load(i), 1) << "round " << round << " task " << i;
        EXPECT_TRUE(futures[i].Get().ok());
      }
    }
    gate_->Set();
    ASSERT_TRUE(blocked.Get().ok());
  }
  // The race was run: some cancels came in time (the rest found the task
  // done, which the loop above checks just as well).
  EXPECT_GT(cancelled_total, 0);
  executor.Shutdown();
}

}  // namespace
}  // namespace parallel
