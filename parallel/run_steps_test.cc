#include "parallel/run_steps.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

using ::parallel::testing::Into;
using ::parallel::testing::OutputFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(RunSteps, ReportsEveryStep) {
  OutputFile out;
  std::vector<Step> steps;
  steps.push_back(Step::Function(
      []() -> absl::StatusOr<std::string> {
        std::printf("twelve bytes");
        return std::string("v");
      },
      "named"));
  steps.push_back(Step::Function([]() -> absl::StatusOr<std::string> {
    return absl::AbortedError("no");
  }));
  steps.push_back(Step::Command({"sh", "-c", "echo cmd; exit 7"}));
  steps.push_back(Step::Command({"sh", "-c", "kill -TERM $$"}));
  ParallelOptions options = Into(out);
  options.return_values = true;
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->steps.size(), 4u);
  EXPECT_EQ(out.Contents(), "twelve bytescmd\n");

  const StepReport& named = report->steps[0];
  EXPECT_EQ(named.name, "named");
  EXPECT_EQ(named.outcome, StepOutcome::kSucceeded);
  EXPECT_EQ(named.exit_code, 0);
  EXPECT_EQ(named.output_bytes, 12u);
  EXPECT_EQ(named.value, "v");
  EXPECT_GT(named.pid, 0);
  EXPECT_GT(named.duration, absl::ZeroDuration());
  EXPECT_FALSE(named.error.has_value());

  EXPECT_EQ(report->steps[1].name, "step 1");
  EXPECT_EQ(report->steps[1].outcome, StepOutcome::kFailed);
  EXPECT_EQ(report->steps[1].error->type, "absl::Status");

  EXPECT_EQ(report->steps[2].exit_code, 7);
  EXPECT_EQ(report->steps[2].output_bytes, 4u);
  EXPECT_EQ(report->steps[2].error->type, kProcessUnexpectedExit);
  EXPECT_THAT(report->steps[2].error->message, HasSubstr("exited with code 7"));

  EXPECT_EQ(report->steps[3].signal, SIGTERM);
  EXPECT_EQ(report->steps[3].exit_code, -1);
  EXPECT_THAT(report->steps[3].error->message,
              HasSubstr("was killed by signal 15 (SIGTERM)"));
  EXPECT_EQ(report->failed_count(), 3u);
  EXPECT_EQ(report->failures().size(), 3u);
}

TEST(RunSteps, AShouldHaltHookStopsTheRunSoonOrNow) {
  for (const RunHooks::Halt when : {RunHooks::Halt::kSoon, RunHooks::Halt::kNow}) {
    testing::OutputFile out;
    ParallelOptions options;
    options.output_fd = out.fd();
    options.max_parallel = 2;
    RunHooks hooks;
    hooks.should_halt = [when](size_t, const StepReport& step) {
      return step.outcome == StepOutcome::kFailed ? when : RunHooks::Halt::kNo;
    };
    absl::StatusOr<RunReport> report = RunSteps(
        {Step::Shell("sleep 0.3; echo slow"), Step::Shell("exit 1"),
         Step::Shell("echo never")},
        options, hooks);
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->steps[2].outcome, StepOutcome::kHalted);
    EXPECT_FALSE(report->steps[2].started);
    if (when == RunHooks::Halt::kSoon) {
      EXPECT_EQ(report->steps[0].outcome, StepOutcome::kSucceeded);
      EXPECT_EQ(out.Contents(), "slow\n");
    } else {
      EXPECT_EQ(report->steps[0].outcome, StepOutcome::kHalted);
      EXPECT_EQ(out.Contents(), "");
    }
  }
}

TEST(RunSteps, ATerminalForStepsNeedsOneStepAtATime) {
  RunHooks hooks;
  hooks.terminal_fd = 0;  // checked before it is used
  ParallelOptions options;
  options.max_parallel = 2;
  absl::StatusOr<RunReport> report =
      RunSteps({Step::Shell("true")}, options, hooks);
  EXPECT_TRUE(absl::IsInvalidArgument(report.status()));
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("terminal_fd needs max_parallel == 1"));
}

TEST(RunSteps, InvalidOptionsAreAStatusAndNothingRuns) {
  ParallelOptions options;
  options.max_parallel = -3;
  absl::StatusOr<RunReport> report = RunSteps({Step::Shell("true")}, options);
  EXPECT_TRUE(absl::IsInvalidArgument(report.status()));
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("max_parallel"));
}

TEST(RunSteps, ShellLinesWithoutMetacharactersRunDirectly) {
  EXPECT_THAT(Step::Shell("echo  a\tb").argv(), ElementsAre("echo", "a", "b"));
  EXPECT_THAT(Step::Shell("echo $HOME").argv(),
              ElementsAre("/bin/sh", "-c", "echo $HOME"));
  EXPECT_THAT(Step::Shell("a | b").argv(),
              ElementsAre("/bin/sh", "-c", "a | b"));
  EXPECT_EQ(Step::Shell("echo x").name(), "echo x");
  OutputFile out;
  absl::StatusOr<RunReport> report = RunSteps(
      {Step::Shell("echo direct"), Step::Shell("echo via shell | tr a-z A-Z")},
      Into(out));
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(out.Contents(), "direct\nVIA SHELL\n");
}

TEST(RunSteps, MissingProgramFailsItsStepOnly) {
  OutputFile out;
  absl::StatusOr<RunReport> report =
      RunSteps({Step::Command({"/no/such/program"}), Step::Shell("echo fine")},
               Into(out));
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->steps[0].outcome, StepOutcome::kFailed);
  EXPECT_EQ(report->steps[0].error->type, kProcessStartError);
  EXPECT_EQ(report->steps[0].error->message,
            "/no/such/program: No such file or directory");
  EXPECT_EQ(report->steps[0].exit_code, 127);
  EXPECT_EQ(report->steps[1].outcome, StepOutcome::kSucceeded);
  EXPECT_EQ(out.Contents(), "fine\n");
}

TEST(RunSteps, StartFailuresReadLikeAShells) {
  const std::string dir = testing::MakeTempDir();
  const std::string plain = dir + "/not-executable";
  { std::ofstream(plain) << "echo hi\n"; }
  OutputFile out;
  absl::StatusOr<RunReport> report =
      RunSteps({Step::Command({"nonexistent_zz"}), Step::Command({plain}),
                Step::Command({dir})},
               Into(out));
  ASSERT_TRUE(report.ok());
  const std::vector<StepReport>& steps = report->steps;
  EXPECT_EQ(steps[0].error->message, "nonexistent_zz: command not found");
  EXPECT_EQ(steps[0].exit_code, 127);
  EXPECT_EQ(steps[1].error->message, plain + ": Permission denied");
  EXPECT_EQ(steps[1].exit_code, 126);
  EXPECT_EQ(steps[2].error->message, dir + ": Is a directory");
  EXPECT_EQ(steps[2].exit_code, 126);
  for (const StepReport& step : steps) {
    EXPECT_EQ(step.error->type, kProcessStartError);
    EXPECT_FALSE(step.started);
  }
}

TEST(RunSteps, HaltedStepsAreReportedAsHalted) {
  OutputFile out;
  ParallelOptions options = Into(out);
  options.halt_on_error = true;
  options.max_parallel = 2;
  absl::StatusOr<RunReport> report =
      RunSteps({Step::Shell("sleep 60"), Step::Shell("false"),
                Step::Shell("echo never")},
               options);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->steps[0].outcome, StepOutcome::kHalted);
  EXPECT_EQ(report->steps[1].outcome, StepOutcome::kFailed);
  EXPECT_EQ(report->steps[2].outcome, StepOutcome::kHalted);
  EXPECT_FALSE(report->steps[2].started);
  EXPECT_EQ(out.Contents(), "");
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

TEST(RunSteps, CommandTimeoutKillsTheProcessGroup) {
  OutputFile out;
  ParallelOptions options = Into(out);
  options.timeout = absl::Milliseconds(100);
  absl::StatusOr<RunReport> report =
      RunSteps({Step::Shell("sleep 60 & sleep 60; echo not reached")}, options);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->steps[0].error->type, kProcessTimeout);
  EXPECT_EQ(out.Contents(), "");
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

// A step that stops itself: on_stopped says so, and the timeout that ends
// it names the stop (its SIGTERM comes with a SIGCONT, so the trap runs).
TEST(RunSteps, AStoppedStepIsReportedAsStopped) {
  OutputFile out;
  ParallelOptions options = Into(out);
  options.timeout = absl::Milliseconds(1500);
  std::vector<std::pair<size_t, bool>> seen;
  RunHooks hooks;
  hooks.on_stopped = [&](size_t index, bool stopped) {
    seen.emplace_back(index, stopped);
  };
  absl::StatusOr<RunReport> report = RunSteps(
      {Step::Shell("sleep 0.2"),
       Step::Shell("trap 'echo got TERM; exit 1' TERM; kill -TSTP $$; sleep 9")},
      options, hooks);
  ASSERT_TRUE(report.ok());
  EXPECT_THAT(seen, ElementsAre(std::make_pair(size_t{1}, true)));
  EXPECT_EQ(report->steps[0].outcome, StepOutcome::kSucceeded);
  ASSERT_TRUE(report->steps[1].error.has_value());
  EXPECT_EQ(report->steps[1].error->type, kProcessTimeout);
  EXPECT_THAT(report->steps[1].error->message,
              HasSubstr("timed out after 1.5s (it was stopped by SIGTSTP)"));
  EXPECT_EQ(out.Contents(), "got TERM\n");
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

TEST(RunSteps, CommandsCannotWriteToTheReplayTargetsDirectly) {
  // output_fd and error_fd above 2, not close-on-exec: a command must not
  // inherit them (it could write past the ordering), just as a closure.
  testing::OutputFile out_file;
  testing::OutputFile err_file;
  const int out = dup(out_file.fd());  // no FD_CLOEXEC on the dups
  const int err = dup(err_file.fd());
  ASSERT_GE(out, 3);
  ASSERT_GE(err, 3);
  ParallelOptions options;
  options.output_fd = out;
  options.combine_stderr = false;
  options.error_fd = err;
  std::vector<Step> steps;
  steps.push_back(
      Step::Shell(absl::StrCat("echo leak >&", out, " || echo closed")));
  steps.push_back(Step::Shell(
      absl::StrCat("echo leak >&", err, " 2>/dev/null || echo closed")));
  steps.push_back(Step::Function([out]() -> absl::StatusOr<std::string> {
    testing::Say(fcntl(out, F_GETFD) == -1 ? "closed\n" : "open\n");
    return std::string();
  }));
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options);
  close(out);
  close(err);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->failed_count(), 0u);
  EXPECT_EQ(out_file.Contents(), "closed\nclosed\nclosed\n");
  EXPECT_THAT(err_file.Contents(),
              ::testing::Not(::testing::HasSubstr("leak")));
}

TEST(RunSteps, ReplayOutputHookDropsAFailedStepsOutputAndKeepsTheOrder) {
  OutputFile out;
  RunHooks hooks;
  std::vector<size_t> asked;
  hooks.replay_output = [&asked](size_t index, const StepReport& report) {
    asked.push_back(index);
    return report.outcome != StepOutcome::kFailed;
  };
  ParallelOptions options = Into(out);
  options.max_parallel = 3;
  std::vector<Step> steps;
  steps.push_back(Step::Shell("sleep 0.2; echo first"));
  steps.push_back(Step::Shell("echo failing; exit 3"));
  steps.push_back(Step::Shell("echo third"));
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options, hooks);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(out.Contents(), "first\nthird\n");
  std::sort(asked.begin(), asked.end());
  EXPECT_THAT(asked, ElementsAre(0, 1, 2));
  // Dropped from the replay, not from the report.
  EXPECT_EQ(report->steps[1].output_tail, "failing\n");
}

TEST(RunSteps, ResultsDirKeepsEachStepsStreamsWhateverItsOutcome) {
  OutputFile out;
  const std::string base =
      absl::StrCat(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR")
                                              : "/tmp",
                   "/results_", getpid());
  ASSERT_EQ(mkdir(base.c_str(), 0700), 0);
  ASSERT_EQ(mkdir((base + "/0").c_str(), 0700), 0);
  RunHooks hooks;
  hooks.results_dir = [&base](size_t index) {
    return index == 0 ? base + "/0" : index == 1 ? base + "/missing" : "";
  };
  ParallelOptions options = Into(out);
  options.combine_stderr = false;
  options.error_fd = out.fd();
  std::vector<Step> steps;
  steps.push_back(Step::Shell("echo out; echo err >&2; exit 2"));
  steps.push_back(Step::Shell("echo never"));
  steps.push_back(Step::Shell("echo no copy"));
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options, hooks);
  ASSERT_TRUE(report.ok()) << report.status();
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(read(base + "/0/stdout"), "out\n");
  EXPECT_EQ(read(base + "/0/stderr"), "err\n");
  EXPECT_EQ(report->steps[0].outcome, StepOutcome::kFailed);
  ASSERT_EQ(report->steps[1].outcome, StepOutcome::kFailed);
  EXPECT_FALSE(report->steps[1].started);
  EXPECT_THAT(report->steps[1].error->message,
              HasSubstr("cannot create " + base + "/missing/stdout"));
  EXPECT_EQ(report->steps[2].outcome, StepOutcome::kSucceeded);
  EXPECT_EQ(out.Contents(), "out\nerr\nno copy\n");
}

TEST(RunSteps, StdinIsDevNull) {
  OutputFile out;
  absl::StatusOr<RunReport> report =
      RunSteps({Step::Shell("wc -c")}, Into(out));
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(out.Contents(), "0\n");
}

TEST(RunSteps, StepsFinishingAheadOfASlowHeadKeepFdUseConstant) {
  // Step 0 is the head until the last step releases it, so every other step
  // finishes ahead of it and must be kept for replay. Their captures move to
  // one spool file instead of holding a descriptor each. 300 steps are 9
  // times the held captures' limit and 4.7 times the bound checked below: a
  // descriptor kept per step would show as ~300 (it was 3,000 steps, then
  // 1,000 — 10 s of the plain stage, 21 s of ASan's — for the same check).
  constexpr int kSteps = 300;
  int gate[2];
  ASSERT_EQ(pipe(gate), 0);
  std::vector<Step> steps;
  std::string expected;
  for (int i = 0; i < kSteps; ++i) {
    steps.push_back(Step::Function([i, gate]() -> absl::StatusOr<std::string> {
      if (i == 0) {
        char byte;
        (void)!read(gate[0], &byte, 1);
      }
      if (i == kSteps - 1) (void)!write(gate[1], "x", 1);
      std::printf("%d\n", i);
      return std::string();
    }));
    absl::StrAppend(&expected, i, "\n");
  }
  OutputFile out;
  ParallelOptions options = Into(out);
  options.max_parallel = 2;
  const int fds_before = testing::CountOpenFds();
  int most_fds = 0;
  RunHooks hooks;
  hooks.on_end = [&most_fds](size_t index, const StepReport&) {
    if (index % 100 == 0)
      most_fds = std::max(most_fds, testing::CountOpenFds());
  };
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options, hooks);
  close(gate[0]);
  close(gate[1]);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->failed_count(), 0u);
  EXPECT_EQ(out.Contents(), expected);
  std::printf("descriptors: %d before, at most %d during the run\n", fds_before,
              most_fds);
  // Held captures (32) plus two running steps' descriptors, whatever kSteps.
  EXPECT_LT(most_fds - fds_before, 64) << most_fds << " vs " << fds_before;
}

// A throttle with a fixed number of permissions, counting what it hands out.
class CountingThrottle : public Throttle {
 public:
  explicit CountingThrottle(int permits) : free_(permits) {}
  bool TryAcquire() override {
    if (free_ == 0) return false;
    --free_;
    ++acquired_;
    return true;
  }
  void Release() override {
    ++free_;
    ++released_;
  }
  int wake_fd() const override { return -1; }
  int acquired() const { return acquired_; }
  int released() const { return released_; }

 private:
  int free_;
  int acquired_ = 0;
  int released_ = 0;
};

TEST(RunSteps, ThrottleBoundsParallelismAndGetsEveryPermissionBack) {
  CountingThrottle throttle(1);  // one extra job beside the implicit slot
  RunHooks hooks;
  hooks.throttle = &throttle;
  int running = 0;
  int most = 0;
  hooks.on_start = [&](size_t) { most = std::max(most, ++running); };
  hooks.on_end = [&](size_t, const StepReport&) { --running; };
  std::vector<Step> steps;
  for (int i = 0; i < 8; ++i) steps.push_back(Step::Shell("sleep 0.02"));
  OutputFile out;
  absl::StatusOr<RunReport> report =
      RunSteps(std::move(steps), Into(out), hooks);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(most, 2);
  EXPECT_GT(throttle.acquired(), 0);
  EXPECT_EQ(throttle.acquired(), throttle.released());
}

TEST(RunSteps, HookThatThrowsAbandonsTheRunCleanly) {
  CountingThrottle throttle(4);
  RunHooks hooks;
  hooks.throttle = &throttle;
  hooks.on_end = [](size_t index, const StepReport&) {
    if (index == 0) throw std::runtime_error("observer broke");
  };
  std::vector<Step> steps;
  steps.push_back(Step::Shell("true"));
  for (int i = 0; i < 4; ++i) steps.push_back(Step::Shell("sleep 60"));
  OutputFile out;
  const int fds = testing::CountOpenFds();
  EXPECT_THROW((void)RunSteps(std::move(steps), Into(out), hooks),
               std::runtime_error);
  EXPECT_EQ(throttle.acquired(), throttle.released());
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
  EXPECT_EQ(testing::CountOpenFds(), fds);
}

TEST(RunSteps, EmptyStepsAreRejectedBeforeAnythingRuns) {
  std::vector<Step> steps;
  steps.push_back(Step::Shell("true"));
  steps.push_back(Step::Command({}));
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps));
  EXPECT_TRUE(absl::IsInvalidArgument(report.status()));
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("step 1"));
}

TEST(RunSteps, ManyStepsAtOnce) {
  std::vector<Step> steps;
  std::string expected;
  for (int i = 0; i < 1100; ++i) {
    steps.push_back(Step::Command({"echo", absl::StrCat(i)}));
    absl::StrAppend(&expected, i, "\n");
  }
  OutputFile out;
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), Into(out));
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->failed_count(), 0u);
  EXPECT_EQ(out.Contents(), expected);
}

TEST(RunSteps, ANestedRunInAStepActsOnTheSignalTheStepGets) {
  // The step forked from this run inherits the run's interrupt state; it
  // must forget it (ForgetInChild), so that its own run catches SIGTERM,
  // kills its steps and says so, as any caller's would.
  int pids[2];
  ASSERT_EQ(pipe2(pids, O_CLOEXEC), 0);
  const int report = pids[1];
  std::vector<Step> outer;
  outer.push_back(Step::Function([report]() -> absl::StatusOr<std::string> {
    std::vector<Step> inner;
    inner.push_back(Step::Function([report]() -> absl::StatusOr<std::string> {
      const pid_t ids[2] = {getppid(), getpid()};  // the outer step, this one
      (void)!write(report, ids, sizeof(ids));
      pause();
      return std::string();
    }));
    absl::StatusOr<RunReport> run = RunSteps(std::move(inner));
    if (!run.ok()) return run.status();
    return absl::StrCat("signal ", run->interrupt_signal, ", inner ",
                        run->steps[0].outcome == StepOutcome::kInterrupted
                            ? "interrupted"
                            : "not interrupted");
  }));
  ParallelOptions options;
  options.return_values = true;
  std::thread killer([read_end = pids[0]] {
    pid_t ids[2] = {0, 0};
    if (read(read_end, ids, sizeof(ids)) == sizeof(ids)) {
      kill(ids[0], SIGTERM);
    }
  });
  absl::StatusOr<RunReport> run = RunSteps(std::move(outer), options);
  close(pids[1]);  // the killer's read ends even if no step wrote
  killer.join();
  close(pids[0]);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->interrupt_signal, 0);  // this run was not interrupted
  ASSERT_EQ(run->steps.size(), 1u);
  EXPECT_EQ(run->steps[0].outcome, StepOutcome::kSucceeded)
      << (run->steps[0].error ? run->steps[0].error->message : "");
  EXPECT_EQ(run->steps[0].value, "signal 15, inner interrupted");
}

}  // namespace
}  // namespace parallel
