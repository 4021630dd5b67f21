// BackgroundTaskRunner when things go wrong: workers that die (running or
// idle), timeouts, halt_on_error, a foreground exception, inputs that close
// their output or leave processes behind, output that cannot be captured —
// and nothing left behind afterwards.

#include "parallel/task_runner.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

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

TEST(BackgroundTaskRunner, ReplacesAWorkerThatDiesAndGoesOn) {
  OutputFile out;
  try {
    using Runner = BackgroundTaskRunner<int>;
    Runner runner(
        [](int i) {
          if (i == 2) raise(SIGKILL);  // as the OOM killer would
          if (i == 5) std::abort();
          if (i == 7) _exit(9);
          Say(absl::StrCat(i, "\n"));
        },
        Into<Runner>(out, 2));
    for (int i = 0; i < 10; ++i) runner.Put(i);
    runner.Wait();
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 3u);
    EXPECT_TRUE(failure.MatchesFailureType(kProcessUnexpectedExit));
    EXPECT_THAT(failure.exc_infos()[0].message,
                HasSubstr("signal 9 (SIGKILL)"));
    EXPECT_THAT(failure.exc_infos()[1].message,
                HasSubstr("signal 6 (SIGABRT)"));
    EXPECT_THAT(failure.exc_infos()[1].traceback, HasSubstr("abort"));
    EXPECT_THAT(failure.exc_infos()[2].message,
                HasSubstr("exited unexpectedly with code 9"));
  }
  EXPECT_EQ(out.Contents(), "0\n1\n3\n4\n6\n8\n9\n");
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

// Blocks until process `pid` sleeps in recvmsg(2) — an idle worker waiting
// for its next input — by reading /proc/<pid>/syscall (no sleeping guess).
void WaitUntilInRecvmsg(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/syscall");
  while (true) {
    std::ifstream file(path);
    long number = -1;
    if (file >> number && number == SYS_recvmsg) return;
    sched_yield();
  }
}

TEST(BackgroundTaskRunner, AWorkerThatDiesWhileIdleFailsNoInput) {
  OutputFile out;
  int pids[2];
  ASSERT_EQ(pipe2(pids, O_CLOEXEC), 0);
  {
    using Runner = BackgroundTaskRunner<int>;
    Runner runner(
        [report = pids[1]](int i) {
          std::printf("%d\n", i);
          const pid_t self = getpid();
          if (i == 0) (void)!write(report, &self, sizeof(self));
        },
        Into<Runner>(out, 1));
    runner.Put(0);
    pid_t worker = 0;
    ASSERT_EQ(read(pids[0], &worker, sizeof(worker)),
              static_cast<ssize_t>(sizeof(worker)));
    WaitUntilInRecvmsg(worker);
    kill(worker, SIGINT);  // as a stray Ctrl-C or the OOM killer would
    runner.Put(1);
    runner.Put(2);
    runner.Wait();  // must not throw: no input was running when it died
  }
  close(pids[0]);
  close(pids[1]);
  EXPECT_EQ(out.Contents(), "0\n1\n2\n");
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

// A worker reuses its output pipes from input to input (worker_main.h). A
// process an input leaves behind still holds them: what it writes later
// must never show up as a later input's output.
TEST(BackgroundTaskRunner, ALeftoverProcessNeverWritesIntoALaterInput) {
  OutputFile out;
  {
    using Runner = BackgroundTaskRunner<int>;
    Runner runner(
        [](int i) {
          if (i == 0) {
            // Outlives the input, then writes while inputs 2-4 run on the
            // same worker (on both of its pipe pairs).
            std::fflush(stdout);
            if (std::system("(sleep 0.15; echo late; sleep 0.1; echo later) &") !=
                0) {
              std::abort();
            }
          }
          usleep(100000);
          std::printf("%d\n", i);
        },
        Into<Runner>(out, 1));
    for (int i = 0; i < 5; ++i) runner.Put(i);
  }
  EXPECT_EQ(out.Contents(), "0\n1\n2\n3\n4\n");
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

TEST(BackgroundTaskRunner, ForegroundExceptionWinsAndWorkersFinish) {
  OutputFile out;
  try {
    using Runner = BackgroundTaskRunner<int>;
    Runner runner(
        [](int i) {
          Say(absl::StrCat(i, "\n"));
          throw std::runtime_error("background failure");
        },
        Into<Runner>(out, 2));
    runner.Put(0);
    runner.Put(1);
    throw std::logic_error("foreground");
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "foreground");
  }
  EXPECT_EQ(out.Contents(), "0\n1\n");
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

TEST(BackgroundTaskRunner, ForegroundExceptionWithHaltKillsWorkersAtOnce) {
  OutputFile out;
  try {
    using Runner = BackgroundTaskRunner<int>;
    Runner::Options options = Into<Runner>(out, 2);
    options.halt_on_error = true;
    Runner runner([](int) { sleep(60); }, options);
    runner.Put(0);
    runner.Put(1);
    throw std::logic_error("foreground");
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "foreground");
  }
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

TEST(BackgroundTaskRunner, HaltOnErrorStopsTheRest) {
  OutputFile out;
  using Runner = BackgroundTaskRunner<int>;
  Runner::Options options = Into<Runner>(out, 2);
  options.halt_on_error = true;
  try {
    Runner runner(
        [](int i) {
          if (i == 0) sleep(60);
          if (i == 1) throw std::runtime_error("stop");
          Say("must not run\n");
        },
        options);
    for (int i = 0; i < 20; ++i) runner.Put(i);
    runner.Wait();
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 1u) << failure.what();
    EXPECT_EQ(failure.exc_infos()[0].step, "input 1 (1)");
  }
  EXPECT_THAT(out.Contents(), Not(HasSubstr("must not run")));
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

// An input that closes its stdout and stderr hurts only itself: the next
// inputs on the same worker print as usual.
TEST(BackgroundTaskRunner, AnInputThatClosesItsOutputHurtsOnlyItself) {
  OutputFile out;
  {
    using Runner = BackgroundTaskRunner<int>;
    Runner runner(
        [](int i) {
          if (i == 1) {
            close(1);
            close(2);
            return;
          }
          Say(absl::StrCat(i, "\n"));
        },
        Into<Runner>(out, 1));
    for (int i = 0; i < 4; ++i) runner.Put(i);
  }
  EXPECT_EQ(out.Contents(), "0\n2\n3\n");
}

TEST(BackgroundTaskRunner, TimeoutKillsAndReplacesTheWorker) {
  OutputFile out;
  try {
    using Runner = BackgroundTaskRunner<int>;
    Runner::Options options = Into<Runner>(out, 1);
    options.timeout = absl::Milliseconds(100);
    Runner runner(
        [](int i) {
          if (i == 0) pause();
          Say(absl::StrCat(i, "\n"));
        },
        options);
    runner.Put(0);
    runner.Put(1);
    runner.Wait();
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 1u);
    EXPECT_EQ(failure.exc_infos()[0].type, kProcessTimeout);
#ifndef __SANITIZE_THREAD__  // TSan defers the dump's signal in pause()
    // (in a child forked by a thread of a multithreaded process, as the
    // runner's workers are: the handler runs after pause() returned)
    EXPECT_THAT(failure.exc_infos()[0].traceback, HasSubstr("pause"));
#endif
  }
  EXPECT_THAT(out.Contents(),
              HasSubstr("step timed out; stack of its main thread"));
  EXPECT_THAT(out.Contents(), HasSubstr("\n1\n"));
}

TEST(BackgroundTaskRunner, SilentTimeoutSparesInputsThatKeepTalking) {
  OutputFile out;
  try {
    using Runner = BackgroundTaskRunner<int>;
    Runner::Options options = Into<Runner>(out, 2);
    options.silent_timeout = absl::Milliseconds(150);
    Runner runner(
        [](int i) {
          if (i == 1) pause();
          for (int k = 0; k < 6; ++k) {
            Say(".");
            usleep(50000);
          }
        },
        options);
    runner.Put(0);
    runner.Put(1);
    runner.Wait();
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 1u) << failure.what();
    EXPECT_EQ(failure.exc_infos()[0].type, kProcessSilentTimeout);
    EXPECT_EQ(failure.exc_infos()[0].step, "input 1 (1)");
  }
  EXPECT_THAT(out.Contents(), StartsWith("......"));
}

TEST(BackgroundTaskRunner, OutputThatCannotBeCapturedFailsOnlyThatInput) {
  // The parent cannot keep more than 1 MiB per spill file (RLIMIT_FSIZE on
  // the caller, SIGXFSZ ignored), as with a full temp dir: input 0's 2 MiB
  // fails with the reason; input 1, behind it, is whole.
  // The replay target is a pipe (no size limit), read by a thread.
  testing::PipeReader reader;
  reader.Start();
  std::optional<BackgroundFailure> failure;
  try {
    using Runner = BackgroundTaskRunner<int>;
    Runner::Options options;
    options.processes = 2;
    options.output_fd = reader.write_end();
    Runner runner(
        [](int i) {
          if (i == 0) {
            const std::string chunk(1 << 16, 'o');
            for (int k = 0; k < 32; ++k) Say(chunk);
            return;
          }
          std::printf("%d\n", i);
        },
        options);
    testing::ScopedFileSizeLimit limit(1 << 20);  // the workers keep theirs
    runner.Put(1);
    runner.Put(0);
    runner.Wait();
  } catch (const BackgroundFailure& e) {
    failure = e;
  }
  const std::string replayed = reader.Finish();
  ASSERT_TRUE(failure.has_value()) << "expected BackgroundFailure";
  ASSERT_EQ(failure->exc_infos().size(), 1u) << failure->what();
  EXPECT_EQ(failure->exc_infos()[0].type, kOutputLost);
  EXPECT_EQ(failure->exc_infos()[0].step, "input 1 (0)");
  EXPECT_THAT(failure->exc_infos()[0].message, HasSubstr("File too large"));
  // Input 1 whole; input 0, the live head by then, streamed what it could
  // before its capture failed (never more than the limit).
  EXPECT_THAT(replayed, ::testing::StartsWith("1\n"));
  EXPECT_LE(replayed.size(), 2u + (1 << 20));
  EXPECT_EQ(replayed.find_first_not_of('o', 2), std::string::npos);
}

TEST(BackgroundTaskRunner, LeavesNoFdChildOrTempFile) {
  const std::string dir = testing::MakeTempDir();
  const int fds = testing::CountOpenFds();
  for (int run = 0; run < 5; ++run) {
    OutputFile out;
    using Runner = BackgroundTaskRunner<int>;
    Runner::Options options = Into<Runner>(out, 2);
    options.temp_dir = dir;
    try {
      Runner runner(
          [](int i) {
            if (i == 1) std::abort();
            if (i == 2) throw std::runtime_error("x");
          },
          options);
      for (int i = 0; i < 4; ++i) runner.Put(i);
    } catch (const BackgroundFailure&) {
    }
  }
  EXPECT_EQ(testing::CountOpenFds(), fds);
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
  EXPECT_EQ(testing::CountDirEntries(dir), 0);
}

}  // namespace
}  // namespace parallel
