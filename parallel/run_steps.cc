#include "parallel/run_steps.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/internal/engine.h"
#include "parallel/launcher.h"

namespace parallel {
namespace {

// Calls the launcher's End() on every way out of the run, exceptions
// included.
class EndLauncher {
 public:
  explicit EndLauncher(CommandLauncher* launcher) : launcher_(launcher) {}
  EndLauncher(const EndLauncher&) = delete;
  EndLauncher& operator=(const EndLauncher&) = delete;
  ~EndLauncher() { launcher_->End(); }

 private:
  CommandLauncher* launcher_;
};

// The report of a run interrupted before any step could start.
RunReport NothingRan(const std::vector<Step>& steps, int interrupt_signal) {
  RunReport report;
  report.interrupt_signal = interrupt_signal;
  report.start_time = report.end_time = absl::Now();
  report.steps.resize(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    report.steps[i].name =
        steps[i].name().empty() ? absl::StrCat("step ", i) : steps[i].name();
    report.steps[i].outcome = StepOutcome::kInterrupted;
    report.steps[i].queued_time = report.start_time;
  }
  return report;
}

absl::StatusOr<RunReport> RunThroughLauncher(std::vector<Step> steps,
                                             const ParallelOptions& options,
                                             const RunHooks& hooks) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) {
    return status;
  }
  CommandLauncher& launcher = *options.launcher;
  size_t commands = 0;
  for (const Step& step : steps) commands += step.is_command() ? 1 : 0;
  if (commands == 0) return internal::RunEngine(std::move(steps), options, hooks);
  const int parallelism =
      options.max_parallel > 0
          ? options.max_parallel
          : static_cast<int>(std::min<size_t>(commands, 1 << 20));
  int interrupt_signal = 0;
  if (absl::Status status = launcher.Begin(parallelism, &interrupt_signal);
      !status.ok()) {
    if (interrupt_signal == 0) return status;
    return NothingRan(steps, interrupt_signal);
  }
  EndLauncher end(&launcher);
  for (size_t i = 0; i < steps.size(); ++i) {
    if (!steps[i].is_command()) continue;
    // The step keeps its name ("step N" stays the default).
    std::string name = steps[i].name();
    steps[i] = Step::Command(launcher.Wrap(i, steps[i].argv()), std::move(name));
  }
  std::vector<bool> is_command(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) is_command[i] = steps[i].is_command();
  absl::StatusOr<RunReport> report =
      internal::RunEngine(std::move(steps), options, hooks);
  if (!report.ok()) return report;
  for (size_t i = 0; i < report->steps.size(); ++i) {
    if (is_command[i] && report->steps[i].started) {
      launcher.Interpret(i, &report->steps[i]);
    }
  }
  return report;
}

}  // namespace

absl::StatusOr<RunReport> RunSteps(std::vector<Step> steps,
                                   const ParallelOptions& options,
                                   const RunHooks& hooks) {
  for (size_t i = 0; i < steps.size(); ++i) {
    if (!steps[i].is_command() && !steps[i].body()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step ", i, " has nothing to run (an empty function or argv)"));
    }
  }
  if (options.launcher != nullptr) {
    return RunThroughLauncher(std::move(steps), options, hooks);
  }
  return internal::RunEngine(std::move(steps), options, hooks);
}

}  // namespace parallel
