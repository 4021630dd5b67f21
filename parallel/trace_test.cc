#include "parallel/trace.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/parallel.h"
#include "testing/process_counts.h"

namespace parallel {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

StepReport Unit(const std::string& name, absl::Time start, int slot,
                absl::Duration duration, StepOutcome outcome) {
  StepReport step;
  step.name = name;
  step.started = true;
  step.start_time = start;
  step.queued_time = absl::UnixEpoch();
  step.slot = slot;
  step.duration = duration;
  step.outcome = outcome;
  return step;
}

// Two slots over 10 s: slot 0 busy 0-6 s, slot 1 busy 0-2 s and 2-4 s;
// one unit never started.
RunReport TenSeconds() {
  const absl::Time t0 = absl::UnixEpoch();
  RunReport report;
  report.start_time = t0;
  report.end_time = t0 + absl::Seconds(10);
  report.slots = 2;
  report.steps.push_back(
      Unit("long", t0, 0, absl::Seconds(6), StepOutcome::kSucceeded));
  report.steps.push_back(Unit("a <b> & \"c\"", t0, 1, absl::Seconds(2),
                              StepOutcome::kSucceeded));
  StepReport failed = Unit("fails", t0 + absl::Seconds(2), 1,
                           absl::Seconds(2), StepOutcome::kFailed);
  failed.exit_code = 3;
  failed.error = ExceptionInfo{"parallel::ProcessUnexpectedExit",
                               "exited with code 3", "", "fails", 42};
  report.steps.push_back(failed);
  StepReport never;
  never.name = "never";
  never.queued_time = t0;
  report.steps.push_back(never);
  return report;
}

TEST(Trace, SummarizeTimesCountsWallBusyLongestAndUnderusedTime) {
  const RunTimes times = SummarizeTimes(TenSeconds());
  EXPECT_EQ(times.wall, absl::Seconds(10));
  EXPECT_EQ(times.busy, absl::Seconds(10));
  EXPECT_DOUBLE_EQ(times.parallelism, 1.0);
  EXPECT_EQ(times.longest, 0u);
  // Fewer than 2 running from 4 s to 10 s.
  EXPECT_EQ(times.underused, absl::Seconds(6));
}

TEST(Trace, ChromeTraceHasAnEventPerStartedUnitWithItsFacts) {
  const std::string json = ChromeTraceJson(TenSeconds());
  EXPECT_THAT(json, HasSubstr(R"("name": "long", "cat": "unit", "ph": "X", "ts": 0, "dur": 6000000)"));
  EXPECT_THAT(json, HasSubstr(R"("name": "fails", "cat": "unit", "ph": "X", "ts": 2000000, "dur": 2000000)"));
  EXPECT_THAT(json, HasSubstr(R"("failure_type": "parallel::ProcessUnexpectedExit", "message": "exited with code 3")"));
  EXPECT_THAT(json, HasSubstr(R"("name": "a <b> & \"c\"")"));
  EXPECT_THAT(json, Not(HasSubstr(R"("name": "never")")));
  EXPECT_THAT(json, HasSubstr(R"("args": {"name": "slot 1"})"));
  // At the start two run and one waits; at the end nothing is left.
  EXPECT_THAT(json, HasSubstr(R"("ts": 0, "pid": )"));
  EXPECT_THAT(json, HasSubstr(R"("args": {"running": 2, "queued": 1}})"));
  EXPECT_THAT(json, HasSubstr(R"("ts": 10000000, "pid": )"));
  EXPECT_THAT(json, HasSubstr(R"("args": {"running": 0, "queued": 0}})"));
}

TEST(Trace, TimelineHasABarPerStartedUnitAndTheFigures) {
  const std::string html = TimelineHtml(TenSeconds(), "ten <seconds>");
  size_t bars = 0;
  for (size_t at = html.find("<rect class=\"bar"); at != std::string::npos;
       at = html.find("<rect class=\"bar", at + 1)) {
    ++bars;
  }
  EXPECT_EQ(bars, 3u);
  EXPECT_THAT(html, HasSubstr("<rect class=\"bar failed\""));
  EXPECT_THAT(html, HasSubstr("<title>ten &lt;seconds&gt;</title>"));
  EXPECT_THAT(html, HasSubstr("<title>a &lt;b&gt; &amp; &quot;c&quot;"));
  EXPECT_THAT(html, HasSubstr("wall 10.00 s &middot; sum of step times 10.00 s"
                              " &middot; parallelism 1.00 of 2 &middot; "
                              "longest: long 6.00 s &middot; fewer than 2 "
                              "busy for 6.00 s"));
  EXPECT_THAT(html, Not(HasSubstr("<script")));
}

std::string ReadFile(const std::string& path) {
  std::stringstream text;
  text << std::ifstream(path).rdbuf();
  return text.str();
}

// The trace file is written on every way out, by every front end.
TEST(Trace, RunStepsWritesTheTraceAlsoWhenHalted) {
  const std::string dir = testing::MakeTempDir();
  testing::OutputFile out;
  ParallelOptions options;
  options.output_fd = out.fd();
  options.halt_on_error = true;
  options.max_parallel = 1;
  options.trace_file = dir + "/halted.json";
  absl::StatusOr<RunReport> report = RunSteps(
      {Step::Shell("exit 1"), Step::Shell("echo never")}, options);
  ASSERT_TRUE(report.ok());
  const std::string json = ReadFile(options.trace_file);
  EXPECT_THAT(json, HasSubstr(R"("name": "exit 1")"));
  EXPECT_THAT(json, Not(HasSubstr(R"("name": "echo never")")));
  EXPECT_EQ(report->slots, 1);
  EXPECT_EQ(testing::CountDirEntries(dir), 1);  // no temp file left
}

TEST(Trace, AnInterruptedRunWritesItsTraceBeforeTheSignalEndsIt) {
  const std::string dir = testing::MakeTempDir();
  const std::string started = dir + "/started";
  const pid_t caller = fork();
  ASSERT_GE(caller, 0);
  if (caller == 0) {
    ParallelOptions options;
    options.trace_file = dir + "/interrupted.json";
    options.output_fd = open("/dev/null", O_WRONLY);
    try {
      RunParallelSteps({[started] {
                         std::ofstream{started};
                         pause();
                       }},
                       options);
    } catch (...) {
      _exit(1);  // never back into gtest in this child
    }
    _exit(0);  // not reached: the SIGTERM is re-raised
  }
  for (int i = 0; i < 2000 && access(started.c_str(), F_OK) != 0; ++i) {
    usleep(10000);
  }
  kill(caller, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(caller, &status, 0), caller);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
  EXPECT_THAT(ReadFile(dir + "/interrupted.json"),
              HasSubstr(R"("status": "interrupted")"));
}

TEST(Trace, TaskRunnersAndTheExecutorWriteTraces) {
  const std::string dir = testing::MakeTempDir();
  testing::OutputFile out;
  {
    BackgroundTaskRunner<int>::Options options;
    options.processes = 2;
    options.output_fd = out.fd();
    options.trace_file = dir + "/runner.json";
    BackgroundTaskRunner<int> runner([](int) {}, options);
    for (int i = 0; i < 3; ++i) runner.Put(i);
  }
  {
    ExecutorOptions options;
    options.max_workers = 2;
    options.output_fd = out.fd();
    options.trace_file = dir + "/executor.json";
    ProcessPoolExecutor executor(options);
    executor.Submit(+[](int x) { return x; }, 1).Get().IgnoreError();
  }
  const std::string runner = ReadFile(dir + "/runner.json");
  EXPECT_THAT(runner, HasSubstr(R"("cat": "unit", "ph": "X")"));
  EXPECT_THAT(runner, HasSubstr(R"("args": {"name": "slot 0"})"));
  const std::string executor = ReadFile(dir + "/executor.json");
  EXPECT_THAT(executor, HasSubstr(R"("status": "succeeded")"));
}

TEST(Trace, AnUnwritableTraceDirectoryIsRejectedBeforeAnythingRuns) {
  ParallelOptions options;
  options.trace_file = "/nonexistent-dir/trace.json";
  absl::StatusOr<RunReport> report = RunSteps({Step::Shell("true")}, options);
  EXPECT_TRUE(absl::IsInvalidArgument(report.status()));
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("trace_file /nonexistent-dir/trace.json"));
}

}  // namespace
}  // namespace parallel
