#include "parallel/run_parallel_steps.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

using ::parallel::testing::Into;
using ::parallel::testing::OutputFile;
using ::parallel::testing::Say;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

BackgroundFailure RunExpectingFailure(std::vector<std::function<void()>> steps,
                                      const ParallelOptions& options) {
  try {
    RunParallelSteps(std::move(steps), options);
  } catch (const BackgroundFailure& failure) {
    return failure;
  }
  ADD_FAILURE() << "RunParallelSteps did not throw BackgroundFailure";
  return BackgroundFailure({});
}

TEST(RunParallelSteps, ReplaysHelloWorldExactly) {
  OutputFile out;
  RunParallelSteps({[] { std::printf("hello world"); }}, Into(out));
  EXPECT_EQ(out.Contents(), "hello world");
}

TEST(RunParallelSteps, KeepsStepOrderWhenLaterStepsFinishFirst) {
  OutputFile out;
  std::vector<std::function<void()>> steps;
  for (int i = 0; i < 6; ++i) {
    steps.push_back([i] {
      std::printf("step %d begins\n", i);
      std::fflush(stdout);
      usleep((6 - i) * 40000);  // the first step finishes last
      std::printf("step %d ends\n", i);
    });
  }
  RunParallelSteps(std::move(steps), Into(out));
  std::string expected;
  for (int i = 0; i < 6; ++i) {
    absl::StrAppend(&expected, "step ", i, " begins\nstep ", i, " ends\n");
  }
  EXPECT_EQ(out.Contents(), expected);
}

TEST(RunParallelSteps, CapturesEveryByteOfLargeMixedOutput) {
  OutputFile out;
  std::vector<std::function<void()>> steps;
  for (int i = 0; i < 50; ++i) {
    steps.push_back([] {
      // 1,000,000 bytes a step: unflushed stdio to both streams.
      const std::string line(99, 'x');
      for (int j = 0; j < 10000; ++j) {
        std::fprintf(j % 2 ? stderr : stdout, "%s\n", line.c_str());
      }
    });
  }
  RunParallelSteps(std::move(steps), Into(out));
  EXPECT_EQ(out.Contents().size(), 50000000u);
}

// A step's stdout is a pipe: seeking fails as on any pipe, and every byte
// is kept once, in order (a seek can neither rewrite nor duplicate output).
TEST(RunParallelSteps, SeekingFailsAsOnAPipeAndNothingIsLostOrDuplicated) {
  OutputFile out;
  RunParallelSteps({[] { usleep(100000); },
                    [] {
                      Say("first\n");
                      if (lseek(1, 0, SEEK_SET) != -1 || errno != ESPIPE) {
                        throw std::runtime_error("seek on stdout worked");
                      }
                      Say("SECOND\n");
                    }},
                   Into(out));
  EXPECT_EQ(out.Contents(), "first\nSECOND\n");
}

TEST(RunParallelSteps, MultibyteTextSplitAcrossWritesIsPreservedAsBytes) {
  OutputFile out;
  const std::string text = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\n";
  std::vector<std::function<void()>> steps;
  for (int i = 0; i < 3; ++i) {
    steps.push_back([text] {
      for (char c : text) {  // one byte per write, splitting every character
        Say(std::string(1, c));
        usleep(1000);
      }
    });
  }
  RunParallelSteps(std::move(steps), Into(out));
  EXPECT_EQ(out.Contents(), text + text + text);
}

TEST(RunParallelSteps, RunsAThousandStepsTwoAtATime) {
#ifdef __SANITIZE_ADDRESS__
  // A fork under ASan costs ~16 ms (its shadow memory's page tables): 2,000
  // steps took 33 s of CI's ASan stage. 500 go through the same code.
  constexpr int kSteps = 500;
#else
  // 2,000 took 13 s of the plain stage and of ctest's; the slot reuse and
  // in-order replay it checks are the same at 1,000.
  constexpr int kSteps = 1000;
#endif
  OutputFile out;
  std::vector<std::function<void()>> steps;
  std::string expected;
  for (int i = 0; i < kSteps; ++i) {
    steps.push_back([i] { std::printf("%d\n", i); });
    absl::StrAppend(&expected, i, "\n");
  }
  ParallelOptions options = Into(out);
  options.max_parallel = 2;
  RunParallelSteps(std::move(steps), options);
  EXPECT_EQ(out.Contents(), expected);
}

TEST(RunParallelSteps, NeverRunsMoreThanMaxParallelAtOnce) {
  // Each step holds a lock file for its lifetime; the steps count how many
  // hold one at once by trying the others.
  const std::string dir = testing::MakeTempDir();
  OutputFile out;
  std::vector<std::function<void()>> steps;
  for (int i = 0; i < 12; ++i) {
    steps.push_back([dir, i] {
      const std::string mine = absl::StrCat(dir, "/", i);
      FILE* f = std::fopen(mine.c_str(), "w");
      std::fclose(f);
      usleep(30000);
      std::printf("%d\n", testing::CountDirEntries(dir));
      unlink(mine.c_str());
    });
  }
  ParallelOptions options = Into(out);
  options.max_parallel = 3;
  RunParallelSteps(std::move(steps), options);
  for (const char c : out.Contents()) {
    if (c != '\n') {
      EXPECT_LE(c - '0', 3);
    }
  }
}

TEST(RunParallelSteps, ReturnsValuesInStepOrder) {
  ParallelOptions options;
  options.return_values = true;
  std::vector<std::function<std::string()>> steps;
  for (int i = 0; i < 5; ++i) {
    steps.push_back([i] {
      usleep((5 - i) * 20000);
      return std::string(i, 'a' + i);
    });
  }
  EXPECT_THAT(RunParallelSteps<std::string>(std::move(steps), options),
              ElementsAre("", "b", "cc", "ddd", "eeee"));
}

TEST(RunParallelSteps, ReturnsNothingWithoutReturnValues) {
  EXPECT_THAT(RunParallelSteps<int>({[] { return 1; }, [] { return 2; }}),
              IsEmpty());
}

TEST(RunParallelSteps, ReturnsStructuredValues) {
  ParallelOptions options;
  options.return_values = true;
  using Value = std::map<std::string, std::vector<int>>;
  std::vector<Value> values =
      RunParallelSteps<Value>({[] {
                                 return Value{{"a", {1, 2}}};
                               },
                               [] { return Value{}; }},
                              options);
  EXPECT_THAT(values, ElementsAre(Value{{"a", {1, 2}}}, Value{}));
}

TEST(RunParallelSteps, ReturnsA64MiBString) {
  ParallelOptions options;
  options.return_values = true;
  std::vector<std::string> values = RunParallelSteps<std::string>(
      {[] { return std::string(64 << 20, 'z'); }}, options);
  ASSERT_EQ(values.size(), 1u);
  EXPECT_EQ(values[0].size(), 64u << 20);
  EXPECT_EQ(values[0].find_first_not_of('z'), std::string::npos);
}

TEST(RunParallelSteps, EmptyStepListDoesNothing) {
  OutputFile out;
  RunParallelSteps({}, Into(out));
  ParallelOptions options = Into(out);
  options.return_values = true;
  EXPECT_THAT(RunParallelSteps<int>({}, options), IsEmpty());
  EXPECT_EQ(out.Contents(), "");
}

TEST(RunParallelSteps, GathersEveryExceptionAfterReplayingAllOutput) {
  OutputFile out;
  BackgroundFailure failure =
      RunExpectingFailure({[] {
                             Say("one\n");
                             throw std::runtime_error("first broke");
                           },
                           [] { Say("two\n"); },
                           [] {
                             Say("three\n");
                             throw std::out_of_range("third broke");
                           }},
                          Into(out));
  EXPECT_EQ(out.Contents(), "one\ntwo\nthree\n");
  ASSERT_EQ(failure.exc_infos().size(), 2u);
  EXPECT_EQ(failure.exc_infos()[0].type, "std::runtime_error");
  // Exactly what(): the step and the pid are fields of their own.
  EXPECT_EQ(failure.exc_infos()[0].message, "first broke");
  EXPECT_EQ(failure.exc_infos()[0].step, "step 0");
  EXPECT_GT(failure.exc_infos()[0].pid, 0);
  EXPECT_EQ(failure.exc_infos()[0].step, "step 0");
  EXPECT_THAT(failure.exc_infos()[0].traceback, Not(IsEmpty()));
  EXPECT_EQ(failure.exc_infos()[1].type, "std::out_of_range");
  EXPECT_EQ(failure.exc_infos()[1].step, "step 2");
  EXPECT_TRUE(failure.HasFailureType("std::out_of_range"));
  EXPECT_FALSE(failure.MatchesFailureType("std::out_of_range"));
  EXPECT_THAT(failure.what(), HasSubstr("third broke"));
  EXPECT_THAT(
      failure.ToSummaryString(),
      AllOf(StartsWith(absl::StrCat("step 0 (pid ", failure.exc_infos()[0].pid,
                                    "): std::runtime_error: first broke")),
            HasSubstr(absl::StrCat("\nstep 2 (pid ", failure.exc_infos()[1].pid,
                                   "): std::out_of_range: third broke"))));
}

struct NotAStdException {};

TEST(RunParallelSteps, ReportsNonStdExceptionsByType) {
  BackgroundFailure failure =
      RunExpectingFailure({[] { throw NotAStdException(); }}, {});
  ASSERT_EQ(failure.exc_infos().size(), 1u);
  EXPECT_EQ(failure.exc_infos()[0].type,
            "parallel::(anonymous namespace)::NotAStdException");
  EXPECT_THAT(failure.exc_infos()[0].message, StartsWith("unknown exception"));
}

TEST(RunParallelSteps, NonOkStatusFailsTheStep) {
  try {
    RunParallelSteps<absl::Status>(
        {[] { return absl::OkStatus(); },
         [] { return absl::NotFoundError("no such target"); }});
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 1u);
    EXPECT_EQ(failure.exc_infos()[0].type, "absl::Status");
    EXPECT_THAT(failure.exc_infos()[0].message, "NOT_FOUND: no such target");
    EXPECT_EQ(failure.exc_infos()[0].step, "step 1");
    EXPECT_TRUE(failure.MatchesFailureType("absl::Status"));
  }
}

TEST(RunParallelSteps, StatusOrStepsReturnValuesOrFail) {
  ParallelOptions options;
  options.return_values = true;
  std::vector<absl::StatusOr<int>> values =
      RunParallelSteps<absl::StatusOr<int>>(
          {[]() -> absl::StatusOr<int> { return 7; },
           []() -> absl::StatusOr<int> { return 8; }},
          options);
  ASSERT_EQ(values.size(), 2u);
  EXPECT_EQ(*values[0], 7);
  EXPECT_EQ(*values[1], 8);
  EXPECT_THROW(
      RunParallelSteps<absl::StatusOr<int>>(
          {[]() -> absl::StatusOr<int> { return absl::InternalError("bad"); }},
          options),
      BackgroundFailure);
}

TEST(RunParallelSteps, ExitIsAnUnexpectedExitWithItsCode) {
  BackgroundFailure failure =
      RunExpectingFailure({[] { std::exit(3); }, [] { _exit(0); }}, {});
  ASSERT_EQ(failure.exc_infos().size(), 2u);
  EXPECT_TRUE(failure.MatchesFailureType(kProcessUnexpectedExit));
  EXPECT_THAT(failure.exc_infos()[0].message,
              AllOf(StartsWith("step 0 (pid "),
                    HasSubstr("exited unexpectedly with code 3")));
  EXPECT_THAT(failure.exc_infos()[1].message,
              HasSubstr("exited unexpectedly with code 0"));
}

// A real fault, kept out of line and hidden from UBSan, which would report it
// itself instead of letting the step die of SIGSEGV.
[[gnu::noinline]] __attribute__((no_sanitize("undefined"))) int
CrashBySegfault() {
  volatile int* volatile null = nullptr;
  return *null;
}

TEST(RunParallelSteps, CrashesAreNamedAndCarryTheCrashingStack) {
  BackgroundFailure failure = RunExpectingFailure(
      {[] { CrashBySegfault(); }, [] { std::abort(); }}, {});
  ASSERT_EQ(failure.exc_infos().size(), 2u);
  EXPECT_TRUE(failure.MatchesFailureType(kProcessUnexpectedExit));
  EXPECT_THAT(failure.exc_infos()[0].message,
              HasSubstr("was killed by signal 11 (SIGSEGV)"));
  EXPECT_THAT(failure.exc_infos()[0].traceback, HasSubstr("CrashBySegfault"));
  EXPECT_THAT(failure.exc_infos()[1].message,
              HasSubstr("was killed by signal 6 (SIGABRT)"));
  EXPECT_THAT(failure.exc_infos()[1].traceback, HasSubstr("abort"));
}

TEST(RunParallelSteps, HaltOnErrorActsOnTheFirstFailureInTime) {
  // Step 0 would run for a minute; step 1 fails at once. Step 0 is halted (its
  // output dropped) and only step 1's failure is reported.
  OutputFile out;
  ParallelOptions options = Into(out);
  options.halt_on_error = true;
  BackgroundFailure failure =
      RunExpectingFailure({[] {
                             Say("slow step started\n");
                             sleep(60);
                           },
                           [] { throw std::runtime_error("fast failure"); }},
                          options);
  ASSERT_EQ(failure.exc_infos().size(), 1u);
  EXPECT_EQ(failure.exc_infos()[0].step, "step 1");
  EXPECT_THAT(out.Contents(), Not(HasSubstr("halted")));
}

TEST(RunParallelSteps, HaltOnErrorWithMaxParallelStartsNothingNew) {
  OutputFile out;
  ParallelOptions options = Into(out);
  options.halt_on_error = true;
  options.max_parallel = 2;
  std::vector<std::function<void()>> steps = {
      [] { sleep(60); }, [] { throw std::runtime_error("stop"); }};
  for (int i = 0; i < 20; ++i) steps.push_back([] { Say("must not run\n"); });
  BackgroundFailure failure = RunExpectingFailure(std::move(steps), options);
  EXPECT_EQ(failure.exc_infos().size(), 1u);
  EXPECT_THAT(out.Contents(), Not(HasSubstr("must not run")));
}

TEST(RunParallelSteps, NestedCallsKeepOrder) {
  OutputFile out;
  RunParallelSteps({[] {
                      Say("outer 0 begins\n");
                      RunParallelSteps({[] {
                                          usleep(50000);
                                          Say("inner 0\n");
                                        },
                                        [] { Say("inner 1\n"); }});
                      Say("outer 0 ends\n");
                    },
                    [] { Say("outer 1\n"); }},
                   Into(out));
  EXPECT_EQ(out.Contents(),
            "outer 0 begins\ninner 0\ninner 1\nouter 0 ends\nouter 1\n");
}

TEST(RunParallelSteps, ForksSafelyWhileOtherThreadsUseMallocAndStdio) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  FILE* sink = std::fopen("/dev/null", "w");
  for (int t = 0; t < 3; ++t) {
    busy.emplace_back([&stop, sink] {
      while (!stop.load()) {
        std::vector<std::string> junk(64, std::string(100, 'j'));
        std::fprintf(sink, "%s\n", junk[3].c_str());
      }
    });
  }
  OutputFile out;
  std::vector<std::function<void()>> steps;
  for (int i = 0; i < 300; ++i) {
    steps.push_back([i] {
      std::vector<std::string> mine(10, std::string(1000, 'm'));
      std::printf("%d %zu\n", i, mine.size());
    });
  }
  ParallelOptions options = Into(out);
  options.max_parallel = 4;
  RunParallelSteps(std::move(steps), options);
  stop = true;
  for (std::thread& thread : busy) thread.join();
  std::fclose(sink);
  std::string expected;
  for (int i = 0; i < 300; ++i) absl::StrAppend(&expected, i, " 10\n");
  EXPECT_EQ(out.Contents(), expected);
}

TEST(RunParallelSteps, LeavesNoFdChildOrTempFileAfterFailingRuns) {
  const std::string dir = testing::MakeTempDir();
  OutputFile out;
  ParallelOptions options = Into(out);
  options.temp_dir = dir;
  const int fds_before = testing::CountOpenFds();
  for (int run = 0; run < 20; ++run) {
    options.halt_on_error = run % 2 == 0;
    options.max_parallel = run % 3;
    EXPECT_THROW(RunParallelSteps({[] { throw std::runtime_error("x"); },
                                   [] { std::abort(); }, [] { std::exit(4); },
                                   [] {
                                     // A grandchild that would hold the output
                                     // open.
                                     if (fork() == 0) {
                                       sleep(60);
                                       _exit(0);
                                     }
                                     Say("step leaves a grandchild behind\n");
                                   },
                                   [] { Say("fine\n"); }},
                                  options),
                 BackgroundFailure);
  }
  EXPECT_EQ(testing::CountOpenFds(), fds_before);
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
  EXPECT_EQ(testing::CountDirEntries(dir), 0);
}

TEST(RunParallelSteps, RejectsInvalidOptionsNamingThem) {
  ParallelOptions options;
  options.max_parallel = -1;
  try {
    RunParallelSteps({[] {}}, options);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("max_parallel"));
  }
  options = {};
  options.timeout = absl::ZeroDuration();
  EXPECT_THROW(RunParallelSteps({[] {}}, options), std::invalid_argument);
  options = {};
  options.output_fd = 987;
  EXPECT_THROW(RunParallelSteps({[] {}}, options), std::invalid_argument);
}

TEST(RunParallelSteps, MissingTempDirIsAClearErrorBeforeAnythingRuns) {
  ParallelOptions options;
  options.temp_dir = "/nonexistent/parallel-test";
  try {
    RunParallelSteps({[] { std::abort(); }}, options);
    FAIL() << "expected std::runtime_error";
  } catch (const BackgroundFailure&) {
    FAIL() << "a step ran";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'/nonexistent/parallel-test'"));
    EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
  }
}

TEST(RunParallelSteps, SeparateStreamsWhenStderrIsNotCombined) {
  OutputFile out;
  OutputFile err;
  ParallelOptions options = Into(out);
  options.combine_stderr = false;
  options.error_fd = err.fd();
  RunParallelSteps({[] {
                      std::fprintf(stdout, "out 0\n");
                      std::fprintf(stderr, "err 0\n");
                    },
                    [] {
                      std::fprintf(stdout, "out 1\n");
                      std::fprintf(stderr, "err 1\n");
                    }},
                   options);
  EXPECT_EQ(out.Contents(), "out 0\nout 1\n");
  EXPECT_EQ(err.Contents(), "err 0\nerr 1\n");
}

TEST(RunParallelSteps, TimeoutKillsTheStepAfterDumpingItsStack) {
  OutputFile out;
  ParallelOptions options = Into(out);
  // Long enough for the quick step under ASan on a loaded 2-core machine
  // (at 100 ms it once timed out too there).
  options.timeout = absl::Milliseconds(400);
  BackgroundFailure failure = RunExpectingFailure({[] {
                                                     Say("about to hang\n");
                                                     pause();
                                                   },
                                                   [] { Say("quick\n"); }},
                                                  options);
  ASSERT_EQ(failure.exc_infos().size(), 1u);
  EXPECT_EQ(failure.exc_infos()[0].type, kProcessTimeout);
  EXPECT_THAT(failure.exc_infos()[0].message,
              HasSubstr("timed out after 400ms"));
  EXPECT_THAT(failure.exc_infos()[0].traceback, HasSubstr("pause"));
  EXPECT_THAT(out.Contents(),
              AllOf(StartsWith("about to hang\n"),
                    HasSubstr("step timed out; stack of its main thread"),
                    HasSubstr("quick\n")));
}

TEST(RunParallelSteps, SilentTimeoutSparesStepsThatKeepTalking) {
  OutputFile out;
  ParallelOptions options = Into(out);
  options.silent_timeout = absl::Milliseconds(150);
  BackgroundFailure failure = RunExpectingFailure(
      {[] {
         for (int i = 0; i < 8; ++i) {
           Say(".");
           usleep(50000);  // talks every 50ms for 400ms: never silent
         }
       },
       [] { pause(); }},
      options);
  ASSERT_EQ(failure.exc_infos().size(), 1u);
  EXPECT_EQ(failure.exc_infos()[0].type, kProcessSilentTimeout);
  EXPECT_EQ(failure.exc_infos()[0].step, "step 1");
  EXPECT_THAT(out.Contents(), StartsWith("........"));
}

// SIGINT to the parent mid-run: steps are killed, output so far replayed, and
// the parent dies of SIGINT. Runs in a forked process that plays the parent.
TEST(RunParallelSteps, InterruptKillsStepsReplaysOutputAndReraises) {
  OutputFile out;
  int pids[2];
  ASSERT_EQ(pipe(pids), 0);
  const pid_t parent = fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    ParallelOptions options;
    options.output_fd = out.fd();
    const int report = pids[1];
    try {
      RunParallelSteps({[report] {
                         const pid_t me = getpid();
                         (void)!write(report, &me, sizeof(me));
                         Say("partial output\n");
                         pause();
                       }},
                       options);
    } catch (...) {
    }
    _exit(0);  // not reached if SIGINT was re-raised
  }
  close(pids[1]);
  pid_t step = 0;
  ASSERT_EQ(read(pids[0], &step, sizeof(step)),
            static_cast<ssize_t>(sizeof(step)));
  close(pids[0]);
  // Wait until the step's output is on disk before interrupting.
  usleep(50000);
  kill(parent, SIGINT);
  int status = 0;
  ASSERT_EQ(waitpid(parent, &status, 0), parent);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGINT);
  EXPECT_FALSE(testing::ProcessExists(step));
  EXPECT_EQ(out.Contents(), "partial output\n");
}

TEST(RunParallelSteps, RunsMoreStepsThanFdsAllowByStartingFewerAtOnce) {
  // 600 steps at once under RLIMIT_NOFILE = 256, in a child that plays the
  // caller so the limit does not touch the test runner.
  const pid_t caller = fork();
  ASSERT_GE(caller, 0);
  if (caller == 0) {
    rlimit limit = {256, 256};
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(2);
    std::vector<std::function<void()>> steps;
    for (int i = 0; i < 600; ++i) steps.push_back([] { usleep(10000); });
    ParallelOptions options;
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    options.output_fd = null;
    try {
      RunParallelSteps(std::move(steps), options);
    } catch (...) {
      _exit(1);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(caller, &status, 0), caller);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace parallel
