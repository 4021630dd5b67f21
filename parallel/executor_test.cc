#include "parallel/executor.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <algorithm>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

using ::parallel::testing::MakeTempDir;
using ::parallel::testing::OutputFile;
using ::parallel::testing::ProcessExists;
using ::parallel::testing::Say;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

ExecutorOptions Into(const OutputFile& out, int workers) {
  ExecutorOptions options;
  options.output_fd = out.fd();
  options.max_workers = workers;
  return options;
}

std::string ReadFile(const std::string& path) {
  std::stringstream text;
  text << std::ifstream(path).rdbuf();
  return text.str();
}

bool Exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

// Waits (up to 20 s) until `path` exists.
bool AwaitFile(const std::string& path) {
  for (int i = 0; i < 2000 && !Exists(path); ++i) usleep(10000);
  return Exists(path);
}

// Waits (up to 5 s) until the process is gone.
bool AwaitGone(pid_t pid) {
  for (int i = 0; i < 500 && ProcessExists(pid); ++i) usleep(10000);
  return !ProcessExists(pid);
}

int Square(int x) { return x * x; }
int Pid() { return getpid(); }
void Nothing() {}
absl::StatusOr<int> NotFound(int x) {
  return absl::NotFoundError(absl::StrCat("no ", x));
}
std::string Join(std::string a, int b) { return absl::StrCat(a, b); }

TEST(Executor, SubmitRunsFunctionPointersAndLambdasInWorkers) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  Future<int> square = executor.Submit(Square, 7);
  Future<int> lambda = executor.Submit([](int x) { return x + 1; }, 41);
  Future<std::string> joined = executor.Submit(Join, std::string("a"), 1);
  Future<int> pid = executor.Submit(Pid);
  Future<void> nothing = executor.Submit(Nothing);
  EXPECT_EQ(*square.Get(), 49);  // in a worker: the same address there
  EXPECT_EQ(*lambda.Get(), 42);
  EXPECT_EQ(*joined.Get(), "a1");
  EXPECT_NE(*pid.Get(), getpid());
  EXPECT_TRUE(nothing.Get().ok());
  EXPECT_TRUE(square.done() && !square.cancelled());
}

TEST(Executor, CapturingCallableSeesItsStateAsAtSubmit) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  std::string text = "at submit";
  Future<std::string> got =
      executor.Submit([text](int n) { return absl::StrCat(text, " ", n); }, 3);
  text = "changed after";
  struct Functor {
    int base;
    int operator()(int x) const { return base + x; }
  };
  Future<int> functor = executor.Submit(Functor{100}, 5);
  Future<int> generic = executor.Submit([](auto x) { return x * 2; }, 21);
  EXPECT_EQ(*got.Get(), "at submit 3");
  EXPECT_EQ(*functor.Get(), 105);
  EXPECT_EQ(*generic.Get(), 42);
}

TEST(Executor, FailuresCarryTheirExceptionInfo) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  Future<int> thrown = executor.Submit(
      [](int) -> int { throw std::runtime_error("boom"); }, 1);
  Future<int> status = executor.Submit(NotFound, 4);
  absl::StatusOr<int> got = thrown.Get();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnknown);
  std::optional<ExceptionInfo> info = GetExceptionInfo(got.status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->type, "std::runtime_error");
  EXPECT_EQ(info->message, "boom");
  EXPECT_EQ(info->step, "task 0 (1)");
  EXPECT_GT(info->pid, 0);
  EXPECT_THAT(info->traceback, HasSubstr("Executor"));  // the throwing frame
  info = GetExceptionInfo(status.Get().status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->type, "absl::Status");
  EXPECT_EQ(info->message, "NOT_FOUND: no 4");
  EXPECT_FALSE(GetExceptionInfo(absl::OkStatus()).has_value());
}

TEST(Executor, AWorkerThatDiesFailsOnlyItsTaskAndIsReplaced) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  Future<int> killed = executor.Submit(+[]() -> int {
    ::raise(SIGKILL);
    return 0;
  });
  Future<int> exited = executor.Submit(+[]() -> int { std::_Exit(3); });
  Future<int> crashed = executor.Submit(+[]() -> int {
    volatile int* null = nullptr;
    return *null;
  });
  std::optional<ExceptionInfo> info = GetExceptionInfo(killed.Get().status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->type, kProcessUnexpectedExit);
  EXPECT_THAT(info->message, HasSubstr("SIGKILL"));
  info = GetExceptionInfo(exited.Get().status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->type, kProcessUnexpectedExit);
  EXPECT_THAT(info->message, HasSubstr("3"));
  info = GetExceptionInfo(crashed.Get().status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->type, kProcessUnexpectedExit);
  EXPECT_THAT(info->message, HasSubstr("SIGSEGV"));
  EXPECT_FALSE(info->traceback.empty());
  // Never a broken executor.
  std::vector<absl::StatusOr<int>> after =
      executor.Map(Square, std::vector<int>{1, 2, 3, 4});
  ASSERT_EQ(after.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*after[i], (i + 1) * (i + 1));
}

TEST(Executor, OutOfMemoryUnderAnRlimitFailsOnlyThatTask) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "a sanitizer's shadow memory does not fit under RLIMIT_AS";
#endif
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  // A capturing lambda: a process of its own, so the rlimit dies with it.
  const size_t bytes = size_t{1} << 31;
  Future<size_t> oom = executor.Submit([bytes] {
    rlimit limit = {size_t{256} << 20, size_t{256} << 20};
    ::setrlimit(RLIMIT_AS, &limit);
    std::vector<char> big(bytes, 1);
    return big.size();
  });
  absl::StatusOr<size_t> got = oom.Get();
  ASSERT_FALSE(got.ok());
  std::optional<ExceptionInfo> info = GetExceptionInfo(got.status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->type, "std::bad_alloc");
  EXPECT_EQ(*executor.Submit(Square, 3).Get(), 9);
}

TEST(Executor, MapKeepsInputOrderAndAppliesTuples) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  std::vector<absl::StatusOr<int>> squares =
      executor.Map(Square, std::vector<int>{3, 1, 2});
  ASSERT_EQ(squares.size(), 3u);
  EXPECT_EQ(*squares[0], 9);
  EXPECT_EQ(*squares[1], 1);
  EXPECT_EQ(*squares[2], 4);
  std::vector<absl::StatusOr<std::string>> joined = executor.Map(
      Join, std::vector<std::tuple<std::string, int>>{{"x", 1}, {"y", 2}});
  ASSERT_EQ(joined.size(), 2u);
  EXPECT_EQ(*joined[0], "x1");
  EXPECT_EQ(*joined[1], "y2");
  std::vector<absl::Status> voids =
      executor.Map(+[](int) {}, std::vector<int>{1, 2});
  EXPECT_TRUE(voids[0].ok() && voids[1].ok());
}

TEST(Executor, AsCompletedYieldsDoneOnesFirstThenInCompletionOrder) {
  OutputFile out;
  const std::string dir = MakeTempDir();
  ProcessPoolExecutor executor(Into(out, 3));
  std::vector<Future<int>> futures;
  futures.push_back(executor.Submit(Square, 5));  // done before AsCompleted
  ASSERT_TRUE(futures[0].WaitFor(absl::Seconds(20)));
  for (int i = 1; i <= 3; ++i) {
    // Each waits for its go-file.
    futures.push_back(executor.Submit(
        [dir](int n) {
          const std::string go = absl::StrCat(dir, "/go", n);
          while (::access(go.c_str(), F_OK) != 0) usleep(2000);
          return n;
        },
        i));
  }
  std::vector<size_t> order;
  const int release[] = {3, 1, 2};
  int next = 0;
  for (size_t index : AsCompleted(futures)) {
    order.push_back(index);
    if (next < 3) std::ofstream(absl::StrCat(dir, "/go", release[next++]));
  }
  EXPECT_THAT(order, ElementsAre(0, 3, 1, 2));
}

TEST(Executor, TaskTimeoutKillsEvenATaskThatIgnoresSigterm) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  TaskOptions task;
  task.name = "stubborn";
  task.timeout = absl::Milliseconds(300);
  Future<int> hung = executor.Submit(task, +[]() -> int {
    ::signal(SIGTERM, SIG_IGN);
    while (true) ::pause();
  });
  absl::StatusOr<int> got = hung.Get();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded);
  std::optional<ExceptionInfo> info = GetExceptionInfo(got.status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->type, kProcessTimeout);
  EXPECT_EQ(info->step, "stubborn");
  EXPECT_EQ(*executor.Submit(Square, 2).Get(), 4);
  executor.Shutdown();
#ifndef __SANITIZE_THREAD__  // TSan defers the dump's signal in pause()
  // Its stack, dumped before the kill, is in its replayed output.
  EXPECT_THAT(out.Contents(), HasSubstr("timed out; stack of its main thread"));
  EXPECT_THAT(out.Contents(), HasSubstr("pause"));
#endif
}

// Arguments far bigger than a socket's buffer, queued behind a task that
// never returns: the worker reads nothing meanwhile, and the executor's
// thread must not wait for it (its timeout is that thread's to enforce).
// The killed worker's unsent records and lane pipes are dropped with it:
// once the executor is gone, no descriptor or process is left.
TEST(Executor, BigArgumentsQueuedBehindAHungTaskLeaveItsTimeoutWorking) {
  OutputFile out;
  const int fds_before = ::parallel::testing::CountOpenFds();
  {
    ExecutorOptions options = Into(out, 1);
    options.task_timeout = absl::Seconds(1);
    ProcessPoolExecutor executor(options);
    const std::string big(4 << 20, 'x');
    std::vector<Future<size_t>> sizes;
    for (int i = 0; i < 4; ++i) {
      sizes.push_back(executor.Submit(
          +[](int i, std::string text) -> size_t {
            if (i == 0) ::pause();
            return text.size();
          },
          i, big));
    }
    EXPECT_EQ(sizes[0].Get().status().code(),
              absl::StatusCode::kDeadlineExceeded);
    for (int i = 1; i < 4; ++i) EXPECT_EQ(*sizes[i].Get(), big.size()) << i;
  }
  EXPECT_EQ(::parallel::testing::CountOpenFds(), fds_before);
  EXPECT_TRUE(::parallel::testing::ChildPids().empty());
}

// Big arguments one way and big results the other, through one worker: the
// worker writes its result while the executor still has arguments for it,
// and neither side may wait for the other to read.
TEST(Executor, BigArgumentsAndBigResultsCrossWithoutDeadlock) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 1));
  std::vector<Future<std::string>> echoes;
  for (int i = 0; i < 6; ++i) {
    echoes.push_back(executor.Submit(
        +[](std::string text) { return text; }, std::string(4 << 20, 'a' + i)));
  }
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<std::string> echo = echoes[i].Get();
    ASSERT_TRUE(echo.ok()) << echo.status();
    EXPECT_EQ(*echo, std::string(4 << 20, 'a' + i));
  }
}

TEST(Executor, CancelIfPendingNeverStartsTheTask) {
  OutputFile out;
  const std::string dir = MakeTempDir();
  ProcessPoolExecutor executor(Into(out, 1));
  // The timeout only bounds a failing run (see .bazelrc on TSan).
  TaskOptions bounded;
  bounded.timeout = absl::Seconds(60);
  Future<int> blocker = executor.Submit(
      bounded, [dir] {
        std::ofstream(dir + "/blocker");
        while (::access((dir + "/go").c_str(), F_OK) != 0) usleep(2000);
        return 1;
      });
  Future<int> pending = executor.Submit([dir] {
    std::ofstream(dir + "/pending-ran");
    return 2;
  });
  ASSERT_TRUE(AwaitFile(dir + "/blocker"));
  EXPECT_FALSE(blocker.Cancel(CancelMode::kIfPending));  // it runs
  EXPECT_TRUE(pending.Cancel(CancelMode::kIfPending));
  EXPECT_TRUE(pending.Cancel(CancelMode::kIfPending));  // still cancelled
  EXPECT_TRUE(pending.cancelled());
  EXPECT_EQ(pending.Get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(GetExceptionInfo(pending.Get().status()).has_value());
  std::ofstream(dir + "/go");
  EXPECT_EQ(*blocker.Get(), 1);
  executor.Shutdown();
  EXPECT_FALSE(Exists(dir + "/pending-ran"));
}

TEST(Executor, CancelKillIfRunningKillsTheTasksProcessGroup) {
  OutputFile out;
  const std::string dir = MakeTempDir();
  ProcessPoolExecutor executor(Into(out, 1));
  Future<int> running = executor.Submit([dir] {
    const pid_t child = fork();
    if (child == 0) {
      while (true) ::pause();
    }
    std::ofstream(dir + "/pids") << getpid() << " " << child << "\n";
    while (true) ::pause();
    return 0;
  });
  ASSERT_TRUE(AwaitFile(dir + "/pids"));
  usleep(20000);
  pid_t task = 0, grandchild = 0;  // the line is written by now
  std::ifstream(dir + "/pids") >> task >> grandchild;
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(running.Cancel(CancelMode::kKillIfRunning));
  EXPECT_TRUE(running.cancelled());
  EXPECT_EQ(running.Get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(AwaitGone(task) && AwaitGone(grandchild));
  EXPECT_EQ(*executor.Submit(Square, 6).Get(), 36);  // a new worker
}

TEST(Executor, CancelRacingCompletionIsAlwaysOneOrTheOther) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  int cancelled = 0;
  for (int i = 0; i < 1000; ++i) {
    Future<int> future = executor.Submit(Square, i);
    if (i % 3 != 0) usleep(i % 7 * 10);
    const bool said = future.Cancel(i % 2 == 0 ? CancelMode::kKillIfRunning
                                               : CancelMode::kIfPending);
    absl::StatusOr<int> got = future.Get();
    if (said) {
      ++cancelled;
      ASSERT_TRUE(future.cancelled());
      ASSERT_EQ(got.status().code(), absl::StatusCode::kCancelled) << i;
    } else {
      ASSERT_FALSE(future.cancelled());
      ASSERT_TRUE(got.ok()) << i << " " << got.status();
      ASSERT_EQ(*got, i * i);
    }
  }
  std::printf("%d of 1000 cancelled\n", cancelled);
}

// A task waits in its worker's socket while the one before it runs: a
// Cancel(kIfPending) that says yes means it never ran — withdrawn through
// its claim word (claims.h) — whichever side was first, 300 times.
char g_marks[256];
void Mark(int i) {
  std::ofstream(absl::StrCat(g_marks, "/", i));
}
void Briefly(int i) { usleep(i % 5 * 100); }
TEST(Executor, CancelOfATaskQueuedBehindAnotherIsExact) {
  const std::string dir = MakeTempDir();
  std::snprintf(g_marks, sizeof(g_marks), "%s", dir.c_str());
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 1));  // workers fork: g_marks set
  int withdrawn = 0;
  for (int i = 0; i < 300; ++i) {
    Future<void> before = executor.Submit(Briefly, i);
    Future<void> queued = executor.Submit(Mark, i);
    if (i % 3 == 0) usleep(i % 7 * 50);
    const bool said = queued.Cancel(CancelMode::kIfPending);
    ASSERT_TRUE(before.Get().ok());
    const bool ran = queued.Get().ok();
    executor.Submit(Nothing).Get().IgnoreError();  // the worker moved on
    ASSERT_EQ(said, !ran) << i;
    ASSERT_EQ(Exists(absl::StrCat(dir, "/", i)), ran) << i;
    withdrawn += said;
  }
  std::printf("%d of 300 withdrawn\n", withdrawn);
}

TEST(Executor, EightThreadsSubmitAtOnce) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Future<int>> futures;
      for (int i = 0; i < 100; ++i) {
        futures.push_back(executor.Submit(Square, t * 1000 + i));
      }
      for (int i = 0; i < 100; ++i) {
        absl::StatusOr<int> got = futures[i].Get();
        if (!got.ok() || *got != Square(t * 1000 + i)) ++wrong;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
}

// A task submitted while the executor's thread waits for an event goes
// straight to an idle worker from the submitting thread (executor.h): its
// output pipes, its timeout and a task that needs a process of its own must
// all still be seen to, and a task from the thread's own callback still
// takes the queue.
TEST(Executor, TasksSubmittedWhileTheLoopWaitsAreSeenToWhole) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  const std::string chunk(1 << 16, 'y');
  std::vector<Future<int>> futures;
  for (int i = 0; i < 50; ++i) {
    usleep(i % 10 == 0 ? 20000 : 0);  // now and then, an idle loop for sure
    Future<int> future = executor.Submit(
        [](int n, const std::string& chunk) {
          Say(absl::StrCat("<", n, ">"));
          for (int k = 0; k < 16; ++k) Say(chunk);  // 1 MiB: pipes polled
          Say(absl::StrCat("</", n, ">\n"));
          return n;
        },
        i, chunk);
    if (i % 3 == 0) {
      absl::StatusOr<int> got = future.Get();
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, i);
    }
    futures.push_back(std::move(future));
  }
  usleep(20000);
  TaskOptions stubborn;
  stubborn.timeout = absl::Milliseconds(300);
  absl::StatusOr<int> hung = executor.Submit(stubborn, +[]() -> int {
    while (true) ::pause();
  }).Get();
  EXPECT_EQ(hung.status().code(), absl::StatusCode::kDeadlineExceeded);
  usleep(20000);
  const int seen = 7;
  EXPECT_EQ(*executor.Submit([seen] { return seen * 6; }).Get(), 42);
  Future<int> from_callback;
  std::mutex mu;
  executor.Submit(Square, 3).OnDone([&](const absl::StatusOr<int>&) {
    std::lock_guard<std::mutex> lock(mu);
    from_callback = executor.Submit(Square, 5);
  });
  for (int tries = 0; tries < 2000; ++tries) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (from_callback.valid()) break;
    }
    usleep(10000);
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_TRUE(from_callback.valid());
    EXPECT_EQ(*from_callback.Get(), 25);
  }
  for (int i = 0; i < 50; ++i) EXPECT_EQ(*futures[i].Get(), i);
  executor.Shutdown();
  // Every block whole, in Submit() order.
  const std::string got = out.Contents();
  size_t at = 0;
  for (int i = 0; i < 50; ++i) {
    const std::string open = absl::StrCat("<", i, ">");
    ASSERT_EQ(got.compare(at, open.size(), open), 0) << "task " << i;
    at += open.size();
    ASSERT_EQ(got.find_first_not_of('y', at), at + (size_t{1} << 20));
    at += size_t{1} << 20;
    const std::string close = absl::StrCat("</", i, ">\n");
    ASSERT_EQ(got.compare(at, close.size(), close), 0) << "task " << i;
    at += close.size();
  }
  // Then only the timed-out task's stack dump.
  EXPECT_EQ(got.find("yyyy", at), std::string::npos);
}

// Threads that each submit and wait one task at a time race for the direct
// path and the queue: every task runs once, its output whole, each
// thread's in its own order.
TEST(Executor, ThreadsSubmittingOneAtATimeLoseNothing) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        absl::StatusOr<int> got = executor.Submit(
            +[](int t, int i) {
              Say(absl::StrCat(t, ":", i, "\n"));
              return t * 1000 + i;
            },
            t, i).Get();
        if (!got.ok() || *got != t * 1000 + i) ++wrong;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  executor.Shutdown();
  EXPECT_EQ(wrong.load(), 0);
  std::vector<int> next(4, 0);
  for (absl::string_view line :
       absl::StrSplit(out.Contents(), '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> parts = absl::StrSplit(line, ':');
    const int t = std::stoi(parts.first);
    ASSERT_TRUE(t >= 0 && t < 4) << line;
    EXPECT_EQ(std::stoi(parts.second), next[t]++) << line;
  }
  EXPECT_THAT(next, ElementsAre(100, 100, 100, 100));
}

TEST(Executor, CallbacksRunInOrderAndOneThatThrowsIsRaisedByShutdown) {
  OutputFile out;
  ProcessPoolExecutor executor(Into(out, 2));
  std::vector<std::string> calls;
  std::mutex mu;
  Future<int> future = executor.Submit(Square, 4);
  future.OnDone([&](const absl::StatusOr<int>& got) {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(absl::StrCat("first ", *got));
  });
  future.OnDone([](const absl::StatusOr<int>&) {
    throw std::logic_error("callback broke");
  });
  future.OnDone([&](const absl::StatusOr<int>& got) {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(absl::StrCat("third ", *got));
  });
  ASSERT_TRUE(future.Get().ok());
  future.OnDone([&](const absl::StatusOr<int>&) {  // done: runs at once
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back("late");
  });
  EXPECT_EQ(*executor.Submit(Square, 2).Get(), 4);  // not hung
  try {
    executor.Shutdown();
    FAIL() << "Shutdown() did not raise the callback's exception";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 1u);
    EXPECT_EQ(failure.exc_infos()[0].type, "std::logic_error");
    EXPECT_EQ(failure.exc_infos()[0].message, "callback broke");
    EXPECT_EQ(failure.exc_infos()[0].step, "callback of task 0 (4)");
  }
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_THAT(calls, ElementsAre("first 16", "third 16", "late"));
}

TEST(Executor, InitializerRunsOncePerWorker) {
  OutputFile out;
  const std::string dir = MakeTempDir();
  ExecutorOptions options = Into(out, 2);
  options.initializer = [dir] {
    std::ofstream(dir + "/init", std::ios::app) << getpid() << "\n";
  };
  std::set<int> task_pids;
  {
    ProcessPoolExecutor executor(options);
    for (absl::StatusOr<int>& pid :
         executor.Map(+[](int) { return static_cast<int>(getpid()); },
                      std::vector<int>(20, 0))) {
      task_pids.insert(*pid);
    }
  }
  std::vector<std::string> lines =
      absl::StrSplit(ReadFile(dir + "/init"), '\n', absl::SkipEmpty());
  std::set<int> init_pids;
  for (const std::string& line : lines) init_pids.insert(std::stoi(line));
  EXPECT_EQ(lines.size(), init_pids.size());  // once per worker
  for (int pid : task_pids) EXPECT_EQ(init_pids.count(pid), 1u) << pid;
}

TEST(Executor, AnInitializerThatThrowsFailsTasksWithoutARespawnLoop) {
  OutputFile out;
  const std::string dir = MakeTempDir();
  ExecutorOptions options = Into(out, 2);
  options.initializer = [dir] {
    std::ofstream(dir + "/tries", std::ios::app) << "x\n";
    throw std::runtime_error("no database");
  };
  ProcessPoolExecutor executor(options);
  std::vector<absl::StatusOr<int>> got =
      executor.Map(Square, std::vector<int>(20, 1));
  for (const absl::StatusOr<int>& one : got) {
    ASSERT_FALSE(one.ok());
    std::optional<ExceptionInfo> info = GetExceptionInfo(one.status());
    ASSERT_TRUE(info.has_value()) << one.status();
    EXPECT_EQ(info->type, "std::runtime_error");
    EXPECT_EQ(info->message, "no database");
  }
  absl::StatusOr<int> later = executor.Submit(Square, 2).Get();
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(GetExceptionInfo(later.status())->message, "no database");
  const std::string tries = ReadFile(dir + "/tries");
  EXPECT_LE(std::count(tries.begin(), tries.end(), '\n'),
            internal::kMaxInitializerFailures + 1);
}

TEST(Executor, ShutdownModes) {
  OutputFile out;
  const std::string dir = MakeTempDir();
  auto slow = [dir](int n) {
    std::ofstream(absl::StrCat(dir, "/started", n));
    usleep(300000);
    return n;
  };
  {
    ProcessPoolExecutor executor(Into(out, 1));
    Future<int> running = executor.Submit(slow, 1);
    Future<int> pending = executor.Submit(slow, 2);
    ASSERT_TRUE(AwaitFile(dir + "/started1"));
    executor.Shutdown(ShutdownMode::kCancelPending);
    executor.Shutdown(ShutdownMode::kKillRunning);  // idempotent: no effect
    EXPECT_EQ(*running.Get(), 1);
    EXPECT_TRUE(pending.cancelled());
    EXPECT_EQ(executor.Submit(Square, 1).Get().status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_FALSE(Exists(dir + "/started2"));
  {
    ProcessPoolExecutor executor(Into(out, 1));
    Future<int> running = executor.Submit(
        [](int) -> int {
          while (true) ::pause();
        },
        0);
    usleep(50000);
    executor.Shutdown(ShutdownMode::kKillRunning);
    EXPECT_TRUE(running.cancelled());
    EXPECT_EQ(running.Get().status().code(), absl::StatusCode::kCancelled);
  }
}

TEST(Executor, DestructorWaitsForEveryTask) {
  OutputFile out;
  const std::string dir = MakeTempDir();
  {
    ProcessPoolExecutor executor(Into(out, 2));
    for (int i = 0; i < 4; ++i) {
      executor.Submit(
          [dir](int n) {
            usleep(100000);
            std::ofstream(absl::StrCat(dir, "/done", n));
          },
          i);
    }
  }
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(Exists(absl::StrCat(dir, "/done", i)));
}

TEST(Executor, BadOptionsAreRejected) {
  ExecutorOptions options;
  options.max_workers = -1;
  EXPECT_THROW(ProcessPoolExecutor{options}, std::invalid_argument);
  options.max_workers = 1;
  options.max_tasks_per_worker = -2;
  EXPECT_THROW(ProcessPoolExecutor{options}, std::invalid_argument);
}

TEST(Executor, WaitForDoesNotWaitPastItsTimeout) {
  OutputFile out;
  const std::string dir = MakeTempDir();
  ProcessPoolExecutor executor(Into(out, 1));
  Future<int> future = executor.Submit([dir] {
    while (::access((dir + "/go").c_str(), F_OK) != 0) usleep(2000);
    return 1;
  });
  EXPECT_FALSE(future.WaitFor(absl::Milliseconds(50)));
  EXPECT_FALSE(future.done());
  std::ofstream(dir + "/go");
  EXPECT_TRUE(future.WaitFor(absl::Seconds(20)));
  EXPECT_EQ(*future.Get(), 1);
}

// Ctrl-C mid-map: one SIGINT kills every worker group and ends the program
// by SIGINT.
TEST(Executor, InterruptMidMapKillsEveryWorkerAndReraises) {
  const std::string dir = MakeTempDir();
  const pid_t program = fork();
  ASSERT_GE(program, 0);
  if (program == 0) {
    OutputFile out;
    ProcessPoolExecutor executor(Into(out, 2));
    executor.Map(
        [dir](int n) {
          std::ofstream(absl::StrCat(dir, "/pid", n)) << getpid();
          while (true) ::pause();
          return 0;
        },
        std::vector<int>{0, 1, 2, 3});
    std::_Exit(0);  // not reached: the interrupt ends the program
  }
  ASSERT_TRUE(AwaitFile(dir + "/pid0"));
  ASSERT_TRUE(AwaitFile(dir + "/pid1"));
  usleep(20000);
  pid_t workers[2] = {0, 0};
  std::ifstream(dir + "/pid0") >> workers[0];
  std::ifstream(dir + "/pid1") >> workers[1];
  ASSERT_EQ(::kill(program, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(program, &status, 0), program);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGINT);
  EXPECT_TRUE(AwaitGone(workers[0]) && AwaitGone(workers[1]));
  EXPECT_FALSE(Exists(dir + "/pid2"));  // nothing started after it
}

}  // namespace
}  // namespace parallel
