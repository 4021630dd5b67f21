// ParallelOptions::launcher: what RunSteps asks of a CommandLauncher and
// when, with a recording launcher that wraps each command in a real shell;
// and SlurmLauncher's reading of srun's exits through a stand-in srun (the
// real cluster is tested by //tools:slurm_test).

#include "parallel/launcher.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/run_steps.h"
#include "parallel/slurm.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

using ::parallel::testing::Into;
using ::parallel::testing::OutputFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Runs each command as `sh -c 'echo "[i]"; exec "$@"' sh argv...` and
// records every call.
class RecordingLauncher : public CommandLauncher {
 public:
  absl::Status Begin(int parallelism, int* interrupt_signal) override {
    calls.push_back(absl::StrCat("Begin ", parallelism));
    *interrupt_signal = begin_interrupt;
    return begin_status;
  }
  std::vector<std::string> Wrap(size_t index,
                                const std::vector<std::string>& argv) override {
    calls.push_back(absl::StrCat("Wrap ", index));
    std::vector<std::string> wrapped = {
        "sh", "-c", absl::StrCat("echo '[", index, "]'; exec \"$@\""), "sh"};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
  }
  void Interpret(size_t index, StepReport* report) override {
    calls.push_back(absl::StrCat("Interpret ", index));
    if (report->exit_code == 42) report->error->message = "rewritten";
  }
  void End() override { calls.push_back("End"); }

  absl::Status begin_status = absl::OkStatus();
  int begin_interrupt = 0;
  std::vector<std::string> calls;
};

TEST(Launcher, WrapsCommandStepsOnlyAndKeepsTheirNames) {
  auto launcher = std::make_shared<RecordingLauncher>();
  OutputFile out;
  ParallelOptions options = Into(out);
  options.max_parallel = 1;
  options.launcher = launcher;
  std::vector<Step> steps;
  steps.push_back(Step::Command({"echo", "a"}, "first"));
  steps.push_back(Step::Function([]() -> absl::StatusOr<std::string> {
    std::printf("closure\n");
    return std::string();
  }));
  steps.push_back(Step::Command({"sh", "-c", "exit 42"}));
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(out.Contents(), "[0]\na\nclosure\n[2]\n");
  EXPECT_THAT(launcher->calls,
              ElementsAre("Begin 1", "Wrap 0", "Wrap 2", "Interpret 0",
                          "Interpret 2", "End"));
  EXPECT_EQ(report->steps[0].name, "first");
  EXPECT_EQ(report->steps[2].name, "step 2");
  // What Interpret() wrote is what the caller gets.
  ASSERT_TRUE(report->steps[2].error.has_value());
  EXPECT_EQ(report->steps[2].error->message, "rewritten");
}

TEST(Launcher, ParallelismIsTheCommandCountWithoutALimit) {
  auto launcher = std::make_shared<RecordingLauncher>();
  OutputFile out;
  ParallelOptions options = Into(out);
  options.launcher = launcher;
  std::vector<Step> steps;
  for (int i = 0; i < 3; ++i) steps.push_back(Step::Command({"true"}));
  steps.push_back(
      Step::Function([]() -> absl::StatusOr<std::string> { return ""; }));
  ASSERT_TRUE(RunSteps(std::move(steps), options).ok());
  EXPECT_EQ(launcher->calls.front(), "Begin 3");
  EXPECT_EQ(launcher->calls.back(), "End");
}

TEST(Launcher, NotAskedWithoutCommandSteps) {
  auto launcher = std::make_shared<RecordingLauncher>();
  OutputFile out;
  ParallelOptions options = Into(out);
  options.launcher = launcher;
  std::vector<Step> steps;
  steps.push_back(Step::Function([]() -> absl::StatusOr<std::string> {
    std::printf("x");
    return std::string();
  }));
  ASSERT_TRUE(RunSteps(std::move(steps), options).ok());
  EXPECT_TRUE(launcher->calls.empty());
  EXPECT_EQ(out.Contents(), "x");
}

TEST(Launcher, BeginFailureEndsTheRunBeforeAnythingStarts) {
  auto launcher = std::make_shared<RecordingLauncher>();
  launcher->begin_status = absl::UnavailableError("no allocation");
  OutputFile out;
  ParallelOptions options = Into(out);
  options.launcher = launcher;
  std::vector<Step> steps;
  steps.push_back(Step::Command({"echo", "never"}));
  steps.push_back(Step::Function([]() -> absl::StatusOr<std::string> {
    std::printf("never\n");
    return std::string();
  }));
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options);
  EXPECT_EQ(report.status(), absl::UnavailableError("no allocation"));
  EXPECT_EQ(out.Contents(), "");
  EXPECT_THAT(launcher->calls, ElementsAre("Begin 1"));  // no End
}

TEST(Launcher, InterruptDuringBeginIsReportedAsAnInterruptedRun) {
  auto launcher = std::make_shared<RecordingLauncher>();
  launcher->begin_status = absl::CancelledError("interrupted");
  launcher->begin_interrupt = SIGTERM;
  OutputFile out;
  ParallelOptions options = Into(out);
  options.launcher = launcher;
  std::vector<Step> steps;
  steps.push_back(Step::Command({"echo", "never"}, "named"));
  steps.push_back(Step::Command({"echo", "never"}));
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->interrupt_signal, SIGTERM);
  ASSERT_EQ(report->steps.size(), 2u);
  EXPECT_EQ(report->steps[0].name, "named");
  EXPECT_EQ(report->steps[1].name, "step 1");
  for (const StepReport& step : report->steps) {
    EXPECT_EQ(step.outcome, StepOutcome::kInterrupted);
    EXPECT_FALSE(step.started);
  }
  EXPECT_EQ(out.Contents(), "");
}

TEST(Launcher, EndRunsWhenAHookThrows) {
  auto launcher = std::make_shared<RecordingLauncher>();
  OutputFile out;
  ParallelOptions options = Into(out);
  options.launcher = launcher;
  RunHooks hooks;
  hooks.on_end = [](size_t, const StepReport&) {
    throw std::runtime_error("hook");
  };
  std::vector<Step> steps;
  steps.push_back(Step::Command({"true"}));
  EXPECT_THROW((void)RunSteps(std::move(steps), options, hooks),
               std::runtime_error);
  ASSERT_FALSE(launcher->calls.empty());
  EXPECT_EQ(launcher->calls.back(), "End");
}

TEST(Launcher, StepsThatNeverStartedAreNotInterpreted) {
  auto launcher = std::make_shared<RecordingLauncher>();
  OutputFile out;
  ParallelOptions options = Into(out);
  options.launcher = launcher;
  options.max_parallel = 1;
  options.halt_on_error = true;
  std::vector<Step> steps;
  steps.push_back(Step::Command({"false"}));
  steps.push_back(Step::Command({"true"}));
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->steps[1].outcome, StepOutcome::kHalted);
  EXPECT_THAT(launcher->calls,
              ElementsAre("Begin 1", "Wrap 0", "Wrap 1", "Interpret 0", "End"));
}

// Runs the command `true` through SlurmLauncher(slurm).
absl::StatusOr<RunReport> RunTrueThrough(const SlurmOptions& slurm) {
  OutputFile out;
  ParallelOptions options = Into(out);
  options.launcher = SlurmLauncher(slurm);
  std::vector<Step> steps;
  steps.push_back(Step::Command({"true"}));
  return RunSteps(std::move(steps), options);
}

// A stand-in for srun in $TEST_TMPDIR: drops srun's options and runs the
// command, whose stderr and exit code play what srun prints and returns.
class FakeSrun : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    srun_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/fake-srun");
    std::ofstream(srun_) << "#!/bin/sh\n"
                            "while case $1 in --*) true;; *) false;; esac; do "
                            "shift; done\n"
                            "exec \"$@\"\n";
    ASSERT_EQ(::chmod(srun_.c_str(), 0755), 0);
    // Inside an "allocation": no salloc.
    ASSERT_EQ(::setenv("SLURM_JOB_ID", "7", 1), 0);
  }
  void TearDown() override { ::unsetenv("SLURM_JOB_ID"); }

  // Runs each shell command through SlurmLauncher and the stand-in.
  RunReport Run(std::vector<std::string> commands) {
    SlurmOptions slurm;
    slurm.srun = srun_;
    slurm.squeue = "true";  // End(): no steps left to cancel
    OutputFile out;
    ParallelOptions options = Into(out);
    options.launcher = SlurmLauncher(slurm);
    std::vector<Step> steps;
    for (std::string& command : commands) {
      steps.push_back(Step::Command({"sh", "-c", std::move(command)}));
    }
    absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *std::move(report) : RunReport{};
  }

  std::string srun_;
};

TEST_F(FakeSrun, SignalOfTheRemoteTaskIsReportedAsASignal) {
  RunReport report = Run(
      {"echo 'srun: error: node7: task 0: Killed' >&2; exit 137",
       "echo 'srun: error: node7: task 0: Exited with exit code 3' >&2; exit 3",
       "echo 'srun: error: Unable to create step for job 7: Invalid' >&2; "
       "exit 1",
       "true"});
  ASSERT_EQ(report.steps.size(), 4u);
  const StepReport& killed = report.steps[0];
  EXPECT_EQ(killed.signal, SIGKILL);
  EXPECT_EQ(killed.exit_code, -1);
  ASSERT_TRUE(killed.error.has_value());
  EXPECT_EQ(killed.error->type, kProcessUnexpectedExit);
  EXPECT_THAT(killed.error->message,
              HasSubstr("killed by signal 9 (SIGKILL) on Slurm node node7"));

  const StepReport& exited = report.steps[1];
  EXPECT_EQ(exited.exit_code, 3);
  EXPECT_EQ(exited.signal, 0);
  EXPECT_THAT(exited.error->message,
              HasSubstr("exited with code 3 on Slurm node node7"));

  const StepReport& unable = report.steps[2];
  ASSERT_TRUE(unable.error.has_value());
  EXPECT_EQ(unable.error->type, kProcessStartError);
  EXPECT_THAT(unable.error->message,
              HasSubstr("srun could not run it: srun: error: Unable to create"));

  EXPECT_EQ(report.steps[3].outcome, StepOutcome::kSucceeded);
}

TEST_F(FakeSrun, ExitCodeAbove128WithoutSrunsLineIsAnExitCode) {
  // The task itself exited 130: no "task 0:" line says it was a signal.
  RunReport report = Run({"exit 130"});
  ASSERT_EQ(report.steps.size(), 1u);
  EXPECT_EQ(report.steps[0].exit_code, 130);
  EXPECT_EQ(report.steps[0].signal, 0);
}

TEST_F(FakeSrun, AStepSlurmDoesNotEndIsNamedOnTheMessageFd) {
  // A stand-in squeue that always lists one step of this run (Slurm 22.05
  // keeps a step whose srun was killed while it started, and scancel cannot
  // end it). The run's name is parallel-<pid>-<n>; n counts runs.
  const std::string squeue = absl::StrCat(srun_, "-squeue");
  std::ofstream(squeue)
      << "#!/bin/sh\n"
         "case \"$*\" in\n"
         "  *'%i %j'*) n=0; while [ $n -lt 100 ]; do "
         "echo \"7.3 parallel-" << ::getpid() << "-$n.0\"; n=$((n+1)); done;;\n"
         "  *) echo 7.3;;\n"
         "esac\n";
  ASSERT_EQ(::chmod(squeue.c_str(), 0755), 0);
  OutputFile messages;
  SlurmOptions slurm;
  slurm.srun = srun_;
  slurm.squeue = squeue;
  slurm.scancel = "true";
  slurm.message_fd = messages.fd();
  slurm.cancel_wait = absl::Milliseconds(300);
  absl::StatusOr<RunReport> report = RunTrueThrough(slurm);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->steps[0].outcome, StepOutcome::kSucceeded);
  EXPECT_EQ(messages.Contents(),
            "parallel: Slurm did not end job step 7.3 of this run after "
            "scancel (a step whose srun was killed while it started cannot "
            "be cancelled); it holds its CPUs until allocation 7 ends\n");
}

TEST(SlurmLauncher, MissingSrunIsAFailedPrecondition) {
  SlurmOptions slurm;
  slurm.srun = "/nonexistent/srun";
  absl::StatusOr<RunReport> report = RunTrueThrough(slurm);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("/nonexistent/srun"));
}

}  // namespace
}  // namespace parallel
