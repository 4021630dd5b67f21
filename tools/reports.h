// JSON and JUnit XML reports of a run, for CI. Both are written atomically: to
// a temp file beside the target, then renamed over it.
//
// Thread-safety: thread-compatible.

#ifndef TOOLS_REPORTS_H_
#define TOOLS_REPORTS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "parallel/step.h"

namespace tools {

// `text` as a JSON string literal, quoted, always valid UTF-8: bytes that are
// not become U+FFFD.
std::string JsonString(absl::string_view text);

// "exit code 3", "signal 9 (SIGKILL)", "timed out", "not started", ...
std::string DescribeEnd(const parallel::StepReport& step);

// A JSON array with one object per step: command, status, exit_code, signal,
// duration_ms, output_bytes (and error for failed steps).
std::string JsonReport(const parallel::RunReport& report);
// A JUnit <testsuite> with one <testcase> per step; failed steps carry a
// <failure> with the message and the tail of their output.
std::string JunitReport(const parallel::RunReport& report);

absl::Status WriteJsonReport(const parallel::RunReport& report,
                             const std::string& path);
absl::Status WriteJunitReport(const parallel::RunReport& report,
                              const std::string& path);

}  // namespace tools

#endif  // TOOLS_REPORTS_H_
