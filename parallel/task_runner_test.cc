// BackgroundTaskRunner and RunTasksInProcessPool doing their job: output
// replayed per input in order, arguments of several types, onexit, tags and
// separate streams, results in input order, the rules of Put(), and how
// memory is seen by first and replacement workers. (Failures and cleanup:
// task_runner_failures_test.cc.)

#include "parallel/task_runner.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/point.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

using ::parallel::testing::OutputFile;
using ::parallel::testing::Point;
using ::parallel::testing::Say;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

template <typename Runner>
typename Runner::Options Into(const OutputFile& out, int processes) {
  typename Runner::Options options;
  options.output_fd = out.fd();
  options.processes = processes;
  return options;
}

TEST(BackgroundTaskRunner, ReplaysEachInputsOutputInPutOrder) {
  OutputFile out;
  {
    using Runner = BackgroundTaskRunner<int>;
    Runner runner(
        [](int i) {
          Say(absl::StrCat("begin ", i, "\n"));
          usleep((4 - i) * 30000);  // later inputs finish first
          Say(absl::StrCat("end ", i, "\n"));
        },
        Into<Runner>(out, 3));
    for (int i = 0; i < 5; ++i) runner.Put(i);
  }
  std::string expected;
  for (int i = 0; i < 5; ++i)
    absl::StrAppend(&expected, "begin ", i, "\nend ", i, "\n");
  EXPECT_EQ(out.Contents(), expected);
}

TEST(BackgroundTaskRunner, BindsArgumentsOfSeveralTypes) {
  OutputFile out;
  {
    using Runner = BackgroundTaskRunner<std::string, std::vector<int>,
                                        std::map<std::string, int>, Point>;
    Runner runner(
        [](std::string s, std::vector<int> v, std::map<std::string, int> m,
           Point p) {
          Say(absl::StrCat(s, " ", v.size(), " ", m["k"], " ", p.x, ",", p.y,
                           "\n"));
        },
        Into<Runner>(out, 2));
    runner.Put("a", {1, 2, 3}, {{"k", 7}}, Point{1, 2});
    runner.Put("b", {}, {}, Point{-3, 4});
  }
  EXPECT_EQ(out.Contents(), "a 3 7 1,2\nb 0 0 -3,4\n");
}

TEST(BackgroundTaskRunner, RunsOnexitOncePerWorkerAfterTheInputs) {
  OutputFile out;
  {
    using Runner = BackgroundTaskRunner<int>;
    Runner::Options options = Into<Runner>(out, 2);
    options.onexit = [] { Say("onexit\n"); };
    Runner runner([](int i) { Say(absl::StrCat(i, "\n")); }, options);
    for (int i = 0; i < 4; ++i) runner.Put(i);
  }
  EXPECT_EQ(out.Contents(), "0\n1\n2\n3\nonexit\nonexit\n");
}

// An onexit that aborts, exits or is killed fails like an input, named,
// with its output replayed.
TEST(BackgroundTaskRunner, AnOnexitThatDiesIsReportedWithItsOutput) {
  for (const int how : {0, 1, 2}) {
    SCOPED_TRACE(how);
    OutputFile out;
    try {
      using Runner = BackgroundTaskRunner<int>;
      Runner::Options options = Into<Runner>(out, 1);
      options.onexit = [how] {
        Say("last words\n");
        if (how == 0) std::abort();
        if (how == 1) _exit(3);
        raise(SIGKILL);
      };
      Runner runner([](int i) { Say(absl::StrCat(i, "\n")); }, options);
      runner.Put(0);
      runner.Wait();
      FAIL() << "expected BackgroundFailure";
    } catch (const BackgroundFailure& failure) {
      ASSERT_EQ(failure.exc_infos().size(), 1u) << failure.what();
      const ExceptionInfo& info = failure.exc_infos()[0];
      EXPECT_EQ(info.type, kProcessUnexpectedExit);
      EXPECT_THAT(info.step, StartsWith("onexit"));
      EXPECT_THAT(info.message,
                  HasSubstr(how == 0   ? "killed by signal 6 (SIGABRT)"
                            : how == 1 ? "exited unexpectedly with code 3"
                                       : "killed by signal 9 (SIGKILL)"));
    }
    EXPECT_EQ(out.Contents(), "0\nlast words\n");
  }
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

TEST(BackgroundTaskRunner, ReportsEveryFailedInputAndRunsTheRest) {
  OutputFile out;
  try {
    using Runner = BackgroundTaskRunner<int, std::string>;
    Runner runner(
        [](int i, std::string) {
          if (i % 3 == 1) throw std::runtime_error(absl::StrCat("bad ", i));
          Say(absl::StrCat(i, "\n"));
        },
        Into<Runner>(out, 2));
    for (int i = 0; i < 6; ++i) runner.Put(i, "arg");
    runner.Wait();
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 2u);
    EXPECT_EQ(failure.exc_infos()[0].type, "std::runtime_error");
    EXPECT_EQ(failure.exc_infos()[0].step, "input 1 (1, \"arg\")");
    EXPECT_EQ(failure.exc_infos()[0].message, "bad 1");  // exactly what()
    EXPECT_GT(failure.exc_infos()[0].pid, 0);
    EXPECT_EQ(failure.exc_infos()[1].step, "input 4 (4, \"arg\")");
  }
  EXPECT_EQ(out.Contents(), "0\n2\n3\n5\n");
}

TEST(BackgroundTaskRunner, TagsLinesAndSeparatesStderrLikeTheSteps) {
  OutputFile out;
  OutputFile err;
  {
    using Runner = BackgroundTaskRunner<int>;
    Runner::Options options = Into<Runner>(out, 2);
    options.tag_lines = true;
    options.combine_stderr = false;
    options.error_fd = err.fd();
    Runner runner(
        [](int i) {
          std::printf("out %d\nmore", i);
          std::fflush(stdout);
          std::fprintf(stderr, "err %d\n", i);
        },
        options);
    runner.Put(0);
    runner.Put(1);
  }
  EXPECT_EQ(out.Contents(),
            "input 0 (0)\tout 0\ninput 0 (0)\tmoreinput 1 (1)\tout 1\n"
            "input 1 (1)\tmore");
  EXPECT_EQ(err.Contents(), "input 0 (0)\terr 0\ninput 1 (1)\terr 1\n");
}

// Reused pipes with separate streams: empty, small and pipe-filling outputs
// on either stream, in any mix, each replayed whole and only once.
TEST(BackgroundTaskRunner, MixedOutputSizesKeepTheirStreamsApart) {
  OutputFile out;
  OutputFile err;
  std::string expected_out;
  std::string expected_err;
  {
    using Runner = BackgroundTaskRunner<int>;
    Runner::Options options = Into<Runner>(out, 2);
    options.combine_stderr = false;
    options.error_fd = err.fd();
    auto text = [](int i) {
      const size_t sizes[] = {0, 1, 100, 70000, 5};
      return std::string(sizes[i % 5], static_cast<char>('a' + i % 26));
    };
    Runner runner(
        [&text](int i) {
          const std::string bytes = text(i);
          std::FILE* stream = i % 3 == 0 ? stderr : stdout;
          std::fwrite(bytes.data(), 1, bytes.size(), stream);
          if (i % 7 == 0) std::fprintf(stdout, "[%d]", i);
        },
        options);
    for (int i = 0; i < 60; ++i) {
      runner.Put(i);
      (i % 3 == 0 ? expected_err : expected_out) += text(i);
      if (i % 7 == 0) absl::StrAppend(&expected_out, "[", i, "]");
    }
  }
  EXPECT_EQ(out.Contents(), expected_out);
  EXPECT_EQ(err.Contents(), expected_err);
}

TEST(BackgroundTaskRunner, PutFromAnotherThreadIsALogicError) {
  OutputFile out;
  using Runner = BackgroundTaskRunner<int>;
  Runner runner([](int i) { Say(absl::StrCat(i, "\n")); },
                Into<Runner>(out, 1));
  runner.Put(1);
  std::string error;
  std::thread other([&] {
    try {
      runner.Put(2);
    } catch (const std::logic_error& e) {
      error = e.what();
    }
  });
  other.join();
  EXPECT_THAT(error, HasSubstr("from a thread other than the one that created"));
  runner.Wait();
  EXPECT_EQ(out.Contents(), "1\n");
}

// What the header says of memory: the first workers see the caller's memory
// as at construction; a replacement worker, as when it is forked.
int g_generation = 0;
TEST(BackgroundTaskRunner, AReplacementWorkerSeesTheCallersMemoryOfItsFork) {
  OutputFile out;
  g_generation = 1;
  try {
    using Runner = BackgroundTaskRunner<int>;
    Runner runner(
        [](int i) {
          if (i == 1) raise(SIGKILL);
          Say(absl::StrCat(i, ":", g_generation, "\n"));
        },
        Into<Runner>(out, 1));
    runner.Put(0);
    g_generation = 2;  // the worker was forked already
    runner.Put(1);     // kills it: its replacement is forked after this
    runner.Put(2);
    runner.Wait();
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    EXPECT_EQ(failure.exc_infos().size(), 1u);
  }
  EXPECT_EQ(out.Contents(), "0:1\n2:2\n");
}

// Put() queues for the runner's thread and returns before the input ran,
// but never lets more than kRunnerQueuePerWorker inputs per worker wait or
// run: memory is bounded however many are put.
TEST(BackgroundTaskRunner, PutQueuesButBlocksWhileTheQueueIsFull) {
  int gate[2];
  ASSERT_EQ(pipe2(gate, O_CLOEXEC), 0);
  OutputFile out;
  std::atomic<int> put{0};
  std::atomic<int> seen_while_blocked{-1};
  std::thread watcher;
  {
    using Runner = BackgroundTaskRunner<int>;
    Runner runner(
        [read_end = gate[0]](int i) {
          char byte;
          if (i == 0) (void)!read(read_end, &byte, 1);  // until released
          Say(absl::StrCat(i, "\n"));
        },
        Into<Runner>(out, 1));
    constexpr int kLimit = internal::kRunnerQueuePerWorker;
    watcher = std::thread([&] {
      while (put.load() < kLimit + 1) sched_yield();
      // Without the bound, the other Put() calls would be done by now.
      usleep(300 * 1000);
      seen_while_blocked = put.load();
      (void)!write(gate[1], "x", 1);
    });
    for (int i = 0; i < 3 * kLimit; ++i) {
      runner.Put(i);
      ++put;
    }
  }
  watcher.join();
  // Puts 0..kLimit returned (input 0 had not ended); the next one waited.
  EXPECT_EQ(seen_while_blocked.load(), internal::kRunnerQueuePerWorker + 1);
  std::string expected;
  for (size_t i = 0; i < 3 * internal::kRunnerQueuePerWorker; ++i) {
    absl::StrAppend(&expected, i, "\n");
  }
  EXPECT_EQ(out.Contents(), expected);
  close(gate[0]);
  close(gate[1]);
}

// While the workers hold all they can, Put() does not wake the runner's
// thread: the input must still run as soon as a worker is free, not only at
// Wait(). Input 0 holds the only worker until released; the worker is then
// given kLanes inputs (the thread has time to take them), and three more
// are put without a wake-up; the last writes a file the caller waits for
// before it calls Wait().
TEST(BackgroundTaskRunner, AnInputPutWhileTheWorkersAreFullRunsBeforeWait) {
  int gate[2];
  int started[2];
  ASSERT_EQ(pipe2(gate, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(started, O_CLOEXEC), 0);
  const std::string marker =
      absl::StrCat(::testing::TempDir(), "/last_input_ran");
  unlink(marker.c_str());
  OutputFile out;
  using Runner = BackgroundTaskRunner<int>;
  Runner runner(
      [read_end = gate[0], started_w = started[1], marker](int i) {
        char byte;
        if (i == 0) {
          (void)!write(started_w, "s", 1);
          (void)!read(read_end, &byte, 1);
        }
        if (i == static_cast<int>(internal::kLanes) + 2) {
          std::ofstream(marker) << "ran";
        }
      },
      Into<Runner>(out, 1));
  runner.Put(0);
  char byte;
  ASSERT_EQ(read(started[0], &byte, 1), 1);
  for (int i = 1; i < static_cast<int>(internal::kLanes); ++i) runner.Put(i);
  usleep(200 * 1000);  // the thread takes them (else this tests less)
  for (int i = internal::kLanes; i <= static_cast<int>(internal::kLanes) + 2;
       ++i) {
    runner.Put(i);
  }
  ASSERT_EQ(write(gate[1], "x", 1), 1);
  bool ran = false;
  for (int waited_ms = 0; waited_ms < 60000 && !ran; waited_ms += 10) {
    ran = access(marker.c_str(), F_OK) == 0;
    if (!ran) usleep(10000);
  }
  EXPECT_TRUE(ran) << "the last input waited for Wait()";
  runner.Wait();
  for (int fd : {gate[0], gate[1], started[0], started[1]}) close(fd);
}

TEST(BackgroundTaskRunner, PutAfterWaitIsALogicError) {
  BackgroundTaskRunner<int> runner([](int) {});
  runner.Wait();
  runner.Wait();  // idempotent
  EXPECT_THROW(runner.Put(1), std::logic_error);
}

TEST(BackgroundTaskRunner, TenThousandInputsThroughTwoWorkers) {
  OutputFile out;
  std::string expected;
  {
    using Runner = BackgroundTaskRunner<int>;
    Runner runner([](int i) { std::printf("%d\n", i); }, Into<Runner>(out, 2));
    for (int i = 0; i < 10000; ++i) {
      runner.Put(i);
      absl::StrAppend(&expected, i, "\n");
    }
  }
  EXPECT_EQ(out.Contents(), expected);
}

TEST(RunTasksInProcessPool, ReturnsResultsInInputOrder) {
  std::vector<std::tuple<int, std::string>> inputs;
  for (int i = 0; i < 20; ++i) inputs.emplace_back(i, std::string(i, 'x'));
  OutputFile out;
  PoolOptions options;
  options.output_fd = out.fd();
  std::vector<std::string> results = RunTasksInProcessPool(
      [](int i, std::string s) {
        usleep((20 - i) * 1000);
        return absl::StrCat(i, ":", s.size());
      },
      inputs, options);
  ASSERT_EQ(results.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(results[i], absl::StrCat(i, ":", i));
}

TEST(RunTasksInProcessPool, VoidTasksAndEmptyInputs) {
  OutputFile out;
  PoolOptions options;
  options.output_fd = out.fd();
  RunTasksInProcessPool([](int i) { Say(absl::StrCat(i, "\n")); },
                        std::vector<std::tuple<int>>{{1}, {2}}, options);
  EXPECT_EQ(out.Contents(), "1\n2\n");
  const int fds = testing::CountOpenFds();
  std::vector<int> none = RunTasksInProcessPool([](int i) { return i; },
                                                std::vector<std::tuple<int>>{});
  EXPECT_THAT(none, IsEmpty());
  EXPECT_EQ(testing::CountOpenFds(), fds);
}

TEST(RunTasksInProcessPool, FailuresAreGatheredAndStatusesCount) {
  try {
    RunTasksInProcessPool(
        [](int i) -> absl::Status {
          return i == 1 ? absl::InvalidArgumentError("odd") : absl::OkStatus();
        },
        std::vector<std::tuple<int>>{{0}, {1}, {2}});
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 1u);
    EXPECT_EQ(failure.exc_infos()[0].type, "absl::Status");
    EXPECT_EQ(failure.exc_infos()[0].step, "input 1 (1)");
  }
}

TEST(RunTasksInProcessPool, RejectsNegativeProcesses) {
  PoolOptions options;
  options.processes = -1;
  EXPECT_THROW(
      RunTasksInProcessPool([](int i) { return i; },
                            std::vector<std::tuple<int>>{{1}}, options),
      std::invalid_argument);
}

}  // namespace
}  // namespace parallel
