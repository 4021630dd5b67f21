// Output is never lost, corrupted or misattributed, and a failure is never
// reported as a pass: the hostile cases of the capture and replay design,
// each with real processes.

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <iostream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/parallel.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::OutputFile;

using testing::PipeReader;

RunReport RunAll(std::vector<Step> steps, const ParallelOptions& options,
                 const RunHooks& hooks = {}) {
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options, hooks);
  EXPECT_TRUE(report.ok()) << report.status();
  return report.ok() ? *std::move(report) : RunReport();
}

TEST(Output, StderrIdiomKeepsStdoutWhole) {
  // Reopening /dev/stderr (O_TRUNC) used to truncate the shared capture file.
  const std::string script =
      "echo line1; echo line2; echo warning >/dev/stderr; echo line3";
  OutputFile out;
  std::vector<Step> steps;
  steps.push_back(Step::Shell(script));
  RunReport combined = RunAll(std::move(steps), testing::Into(out));
  EXPECT_EQ(combined.failed_count(), 0u);
  EXPECT_EQ(out.Contents(), "line1\nline2\nwarning\nline3\n");

  OutputFile out2;
  OutputFile err2;
  ParallelOptions apart = testing::Into(out2);
  apart.combine_stderr = false;
  apart.error_fd = err2.fd();
  steps.clear();
  steps.push_back(Step::Shell(script + " | tee /dev/stderr"));
  RunReport separate = RunAll(std::move(steps), apart);
  EXPECT_EQ(separate.failed_count(), 0u);
  EXPECT_EQ(out2.Contents(), "line1\nline2\nline3\n");
  EXPECT_EQ(err2.Contents(), "warning\nline3\n");
}

TEST(Output, AppendModeAndSeeksNeverReplayAnotherStepsBytes) {
  OutputFile out;
  ParallelOptions options = testing::Into(out);
  options.max_parallel = 1;
  std::vector<Step> steps;
  steps.push_back(Step::Function([]() -> absl::StatusOr<std::string> {
    testing::Say("SECRET-OF-STEP-0\n");
    return std::string();
  }));
  steps.push_back(Step::Function([]() -> absl::StatusOr<std::string> {
    fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_APPEND);
    lseek(1, 20, SEEK_SET);
    testing::Say("step1\n");
    return std::string();
  }));
  RunReport report = RunAll(std::move(steps), options);
  EXPECT_EQ(report.failed_count(), 0u);
  EXPECT_EQ(out.Contents(), "SECRET-OF-STEP-0\nstep1\n");
}

// With SIGPIPE at its default (it would kill the caller if it were raised)
// and ignored (the write fails with EPIPE and must not be swallowed).
class ReaderGone : public ::testing::TestWithParam<bool> {};

TEST_P(ReaderGone, StopsTheRunAndSaysEpipeWithoutKillingTheCaller) {
  struct sigaction action = {}, saved;
  action.sa_handler = GetParam() ? SIG_IGN : SIG_DFL;
  sigaction(SIGPIPE, &action, &saved);
  PipeReader reader;
  reader.CloseReadEnd();
  ParallelOptions options;
  options.output_fd = reader.write_end();
  std::vector<Step> steps;
  steps.push_back(Step::Shell("yes | head -c 1000000"));
  steps.push_back(Step::Shell("sleep 30; echo late"));
  RunReport report = RunAll(std::move(steps), options);
  sigaction(SIGPIPE, &saved, nullptr);
  // Still alive: no SIGPIPE. The late step was stopped, not waited for.
  ASSERT_TRUE(report.output_error.has_value());
  EXPECT_EQ(report.output_error->type, kOutputLost);
  EXPECT_EQ(report.output_errno, EPIPE);
  EXPECT_THAT(report.output_error->message, HasSubstr("stdout"));
  EXPECT_THAT(report.output_error->message, HasSubstr("Broken pipe"));
  EXPECT_EQ(report.steps[1].outcome, StepOutcome::kHalted);
  EXPECT_THAT(testing::ChildPids(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Sigpipe, ReaderGone, ::testing::Bool());

TEST(Output, ThrowingApiReportsLostOutput) {
  PipeReader reader;
  reader.CloseReadEnd();
  ParallelOptions options;
  options.output_fd = reader.write_end();
  try {
    RunParallelSteps({[] { testing::Say("x\n"); }}, options);
    FAIL() << "a run whose output was lost must not pass";
  } catch (const BackgroundFailure& failure) {
    EXPECT_TRUE(failure.HasFailureType(kOutputLost));
    EXPECT_THAT(failure.what(), HasSubstr("Broken pipe"));
  }
}

// A stream buffer that keeps every byte until it is synced, then writes
// them to a descriptor: what a C++ stream of the step's own may hold when
// the step returns.
class HoldingBuffer : public std::streambuf {
 public:
  explicit HoldingBuffer(int fd) : fd_(fd) {}

 protected:
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) held_.push_back(traits_type::to_char_type(c));
    return traits_type::not_eof(c);
  }
  int sync() override {
    const bool written =
        ::write(fd_, held_.data(), held_.size()) ==
        static_cast<ssize_t>(held_.size());
    held_.clear();
    return written ? 0 : -1;
  }

 private:
  const int fd_;
  std::string held_;
};

TEST(Output, CppStreamBytesAreDeliveredWhateverTheStreamsBuffer) {
  // The library flushes std::cout and std::cerr itself only when they no
  // longer write straight through to stdio (launch.h: FlushCppStreams).
  auto step = [](std::function<void()> body) {
    return Step::Function([body]() -> absl::StatusOr<std::string> {
      body();
      return std::string();
    });
  };
  std::vector<Step> steps;
  steps.push_back(step([] {
    std::cout << "default:";
    std::cerr << "err;";
  }));
  steps.push_back(step([] {
    std::ios_base::sync_with_stdio(false);  // cout buffers on its own now
    std::cout << "unsynced;";
  }));
  steps.push_back(step([] {
    static HoldingBuffer held(STDOUT_FILENO);
    std::cout.rdbuf(&held);
    std::cout << "own buffer;";
  }));
  steps.push_back(step([] {
    static HoldingBuffer held(STDERR_FILENO);
    std::cerr.rdbuf(&held);
    std::cerr << "own cerr buffer";
  }));
  OutputFile out;
  RunReport report = RunAll(std::move(steps), testing::Into(out));
  EXPECT_EQ(report.failed_count(), 0u);
  EXPECT_EQ(out.Contents(),
            "default:err;unsynced;own buffer;own cerr buffer");
}

TEST(Output, DeadlinesAreServicedWhileTheOutputIsBlocked) {
  // Nobody reads the output until the second step has timed out: the
  // supervisor must not sit in a blocking write meanwhile.
  PipeReader reader;
  std::atomic<bool> timed_out{false};
  ParallelOptions options;
  options.output_fd = reader.write_end();
  options.timeout = absl::Milliseconds(300);
  RunHooks hooks;
  hooks.on_end = [&](size_t index, const StepReport& step) {
    if (index == 1 && step.error && step.error->type == kProcessTimeout) {
      if (!timed_out.exchange(true)) reader.Start();
    }
  };
  std::vector<Step> steps;
  steps.push_back(Step::Shell("head -c 2000000 /dev/zero"));
  steps.push_back(Step::Shell("sleep 30"));
  RunReport report = RunAll(std::move(steps), options, hooks);
  EXPECT_TRUE(timed_out.load());
  EXPECT_EQ(report.steps[0].outcome, StepOutcome::kSucceeded);
  EXPECT_EQ(reader.Finish().size(), 2000000u);
}

TEST(Output, CallerIgnoringSigchldStillGetsExitCodes) {
  struct sigaction ignore = {}, saved;
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGCHLD, &ignore, &saved);
  OutputFile out;
  std::vector<Step> steps;
  steps.push_back(Step::Shell("exit 7"));
  steps.push_back(Step::Command({"true"}));
  steps.push_back(
      Step::Function([]() -> absl::StatusOr<std::string> { _exit(3); }));
  RunReport report = RunAll(std::move(steps), testing::Into(out));
  struct sigaction after;
  sigaction(SIGCHLD, nullptr, &after);
  sigaction(SIGCHLD, &saved, nullptr);
  EXPECT_EQ(after.sa_handler, SIG_IGN);  // the caller's disposition is back
  EXPECT_EQ(report.steps[0].exit_code, 7);
  EXPECT_EQ(report.steps[0].outcome, StepOutcome::kFailed);
  EXPECT_EQ(report.steps[1].outcome, StepOutcome::kSucceeded);
  EXPECT_EQ(report.steps[2].outcome, StepOutcome::kFailed);
  EXPECT_THAT(report.steps[2].error->message,
              HasSubstr("exited unexpectedly with code 3"));
}

TEST(Output, StolenExitStatusIsNeverAPass) {
  // Another thread reaps any child it can, as a daemon's SIGCHLD handler
  // might: failing commands must still fail (with their code, or as lost).
  std::atomic<bool> stop{false};
  std::thread thief([&stop] {
    while (!stop.load()) {
      if (waitpid(-1, nullptr, WNOHANG) <= 0) usleep(100);
    }
  });
  std::vector<Step> steps;
  for (int i = 0; i < 20; ++i) steps.push_back(Step::Command({"false"}));
  OutputFile out;
  RunReport report = RunAll(std::move(steps), testing::Into(out));
  stop = true;
  thief.join();
  for (const StepReport& step : report.steps) {
    EXPECT_EQ(step.outcome, StepOutcome::kFailed) << step.name;
  }
}

// A 2 MiB tmpfs as the temp dir (root in a private mount namespace): the
// space a run needs is the output not yet replayed, no more.
class SmallTempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=2m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here (needs root): "
                   << strerror(errno);
    }
  }
  std::string dir_;
};

TEST_F(SmallTempDir, OneStepAtATimeNeedsOnlyItsUnreplayedOutput) {
  OutputFile out;
  ParallelOptions options = testing::Into(out);
  options.max_parallel = 1;
  options.temp_dir = dir_;
  std::vector<Step> steps;
  for (int i = 0; i < 4; ++i) {  // each 1.5 MiB, 6 MiB in all
    steps.push_back(Step::Shell("head -c 1572864 /dev/zero"));
  }
  steps.push_back(Step::Shell("head -c 10000000 /dev/zero"));  // 10 MB
  steps.push_back(Step::Shell("echo small >&2"));
  steps.push_back(Step::Shell("echo third-ok"));
  RunReport report = RunAll(std::move(steps), options);
  EXPECT_EQ(report.failed_count(), 0u);
  const std::string text = out.Contents();
  EXPECT_EQ(text.size(), 4u * 1572864 + 10000000 + 6 + 9);
  EXPECT_THAT(text, ::testing::EndsWith("small\nthird-ok\n"));
}

TEST_F(SmallTempDir, AStepThatCannotBeKeptFailsAndOthersAreIntact) {
  // Behind a slow head, a 10 MB step must wait in the temp dir: it cannot,
  // and fails naming the reason; the other steps' output is whole.
  OutputFile out;
  ParallelOptions options = testing::Into(out);
  options.temp_dir = dir_;
  std::vector<Step> steps;
  steps.push_back(Step::Shell("sleep 0.5; echo head"));
  steps.push_back(Step::Shell("head -c 10000000 /dev/zero"));
  steps.push_back(Step::Shell("echo third-ok"));
  RunReport report = RunAll(std::move(steps), options);
  EXPECT_EQ(report.steps[0].outcome, StepOutcome::kSucceeded);
  ASSERT_EQ(report.steps[1].outcome, StepOutcome::kFailed);
  EXPECT_EQ(report.steps[1].error->type, kOutputLost);
  EXPECT_THAT(report.steps[1].error->message,
              HasSubstr("No space left on device"));
  EXPECT_EQ(report.steps[2].outcome, StepOutcome::kSucceeded);
  EXPECT_EQ(out.Contents(), "head\nthird-ok\n");
}

}  // namespace
}  // namespace parallel
