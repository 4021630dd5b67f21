#include "parallel/run_parallel_steps.h"

#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "parallel/internal/interrupt.h"

namespace parallel {
namespace internal {

RunReport RunOrThrow(std::vector<Step> steps, const ParallelOptions& options) {
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options);
  if (!report.ok()) ThrowStatus(report.status());
  ThrowIfFailed(*report);
  return *std::move(report);
}

void ThrowIfFailed(const RunReport& report) {
  std::vector<ExceptionInfo> failures = report.failures();
  if (report.output_error) failures.push_back(*report.output_error);
  if (report.interrupt_signal != 0) {
    ReraiseSignal(report.interrupt_signal);
    // Still here: the caller handles (or ignores) the signal. The run did not
    // complete, which must not pass for success.
    failures.push_back(
        {"parallel::Interrupted",
         absl::StrCat("interrupted by signal ", report.interrupt_signal), "",
         "run"});
  }
  if (!failures.empty()) throw BackgroundFailure(std::move(failures));
}

[[noreturn]] void ThrowStatus(const absl::Status& status) {
  const std::string message = absl::StrCat("parallel: ", status.message());
  if (absl::IsInvalidArgument(status)) throw std::invalid_argument(message);
  throw std::runtime_error(message);
}

}  // namespace internal

void RunParallelSteps(std::vector<std::function<void()>> steps,
                      const ParallelOptions& options) {
  std::vector<Step> wrapped;
  wrapped.reserve(steps.size());
  for (auto& step : steps) {
    wrapped.push_back(Step::Function(
        [step = std::move(step)]() -> absl::StatusOr<std::string> {
          step();
          return std::string();
        }));
  }
  // The moved-from functions would only add to what every fork copies.
  std::vector<std::function<void()>>().swap(steps);
  internal::RunOrThrow(std::move(wrapped), options);
}

}  // namespace parallel
