#include "parallel/run_steps.h"

#include <utility>

#include "parallel/internal/engine.h"

namespace parallel {

absl::StatusOr<RunReport> RunSteps(std::vector<Step> steps,
                                   const ParallelOptions& options,
                                   const RunHooks& hooks) {
  for (const Step& step : steps) {
    if (!step.is_command() && !step.body()) {
      return absl::InvalidArgumentError("a step has no body (empty function)");
    }
  }
  return internal::RunEngine(std::move(steps), options, hooks);
}

}  // namespace parallel
