// Arbitrary bytes as a RunReport whose every piece of step text (command,
// error type and message, output tail) is hostile: shared by the report
// writers' fuzz target and their parser test.
//
//   parallel::RunReport report = tools::ReportFromBytes(bytes);
//
// The bytes are split at the first two NULs into: the failed step's
// command, its error message, its output tail; the tail is also the name of
// a second step that passed.

#ifndef TOOLS_REPORT_FROM_BYTES_H_
#define TOOLS_REPORT_FROM_BYTES_H_

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "parallel/failure.h"
#include "parallel/step.h"

namespace tools {

inline parallel::RunReport ReportFromBytes(absl::string_view bytes) {
  std::vector<std::string> fields =
      absl::StrSplit(bytes, absl::MaxSplits('\0', 2));
  fields.resize(3);
  parallel::RunReport report;
  parallel::StepReport& failed = report.steps.emplace_back();
  failed.name = fields[0];
  failed.outcome = parallel::StepOutcome::kFailed;
  failed.exit_code = 1;
  failed.error = parallel::ExceptionInfo{"std::runtime_error", fields[1], "",
                                         fields[0], 42};
  failed.output_tail = fields[2];
  parallel::StepReport& passed = report.steps.emplace_back();
  passed.name = fields[2];
  passed.exit_code = 0;
  return report;
}

}  // namespace tools

#endif  // TOOLS_REPORT_FROM_BYTES_H_
