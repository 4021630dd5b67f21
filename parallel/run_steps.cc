#include "parallel/run_steps.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "parallel/internal/engine.h"

namespace parallel {

absl::StatusOr<RunReport> RunSteps(std::vector<Step> steps,
                                   const ParallelOptions& options,
                                   const RunHooks& hooks) {
  for (size_t i = 0; i < steps.size(); ++i) {
    if (!steps[i].is_command() && !steps[i].body()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step ", i, " has nothing to run (an empty function or argv)"));
    }
  }
  return internal::RunEngine(std::move(steps), options, hooks);
}

}  // namespace parallel
