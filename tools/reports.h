// JSON and JUnit XML reports of a run, for CI. Both are written atomically: to
// a temp file beside the target, then renamed over it.
//
// Thread-safety: thread-compatible.

#ifndef TOOLS_REPORTS_H_
#define TOOLS_REPORTS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "parallel/report_text.h"
#include "parallel/step.h"

namespace tools {

using ::parallel::JsonString;  // report_text.h

// "exit code 3", "signal 9 (SIGKILL)", "timed out", "not started", ...
std::string DescribeEnd(const parallel::StepReport& step);

// How many times a step ran (--retries), and the failure of its first
// attempt when a later one passed (then it is flaky).
struct Attempts {
  int count = 1;
  std::optional<parallel::ExceptionInfo> first_failure;
  std::string first_tail;
  bool flaky() const { return first_failure.has_value(); }
};

// A JSON array with one object per step: command, status, exit_code, signal,
// duration_ms, output_bytes, attempts, flaky (and error for failed steps).
// `attempts`, if given, has one entry per step (else each ran once).
std::string JsonReport(const parallel::RunReport& report,
                       const std::vector<Attempts>* attempts = nullptr);
// A JUnit <testsuite> with one <testcase> per step; failed steps carry a
// <failure> with the message and the tail of their output; a flaky one
// passes with a <flakyFailure> for its failed attempt, as Maven Surefire
// writes it.
std::string JunitReport(const parallel::RunReport& report,
                        const std::vector<Attempts>* attempts = nullptr);

absl::Status WriteJsonReport(const parallel::RunReport& report,
                             const std::string& path,
                             const std::vector<Attempts>* attempts = nullptr);
absl::Status WriteJunitReport(const parallel::RunReport& report,
                              const std::string& path,
                              const std::vector<Attempts>* attempts = nullptr);
// --timeline: parallel::TimelineHtml, atomically.
absl::Status WriteTimelineReport(const parallel::RunReport& report,
                                 const std::string& path);

// "12 steps in 3.4 s, parallelism 1.8 of 2, longest: make -C a 2.1 s"
// (`noun` names the units; the longest is cut at 60 bytes).
std::string RunSummaryLine(const parallel::RunReport& report,
                           absl::string_view noun = "steps");

}  // namespace tools

#endif  // TOOLS_REPORTS_H_
