// The test seam: a switch that makes every run execute its closures one after
// another in the calling process, as chromite's ParallelMock did. Users turn
// it on through parallel::testing::InProcessSteps (testing/in_process_steps.h).
//
// Thread-safety: the switch is a process-wide atomic counter.

#ifndef PARALLEL_INTERNAL_IN_PROCESS_H_
#define PARALLEL_INTERNAL_IN_PROCESS_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/failure.h"
#include "parallel/step.h"

namespace parallel {
namespace internal {

void EnterInProcessMode();
void LeaveInProcessMode();
bool InProcessMode();

// Runs `body` here and now as the step `report->name`, and fills the rest of
// *report: started, pid (this process), outcome, exit_code, value (when
// `keep_value`), error (exactly the exception's what() or the status, as in a
// child; step and pid set), duration. stdout is flushed before and after, so
// the step's output lands between the caller's. Returns whether it succeeded.
bool RunStepInProcess(const std::function<absl::StatusOr<std::string>()>& body,
                      bool keep_value, StepReport* report);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_IN_PROCESS_H_
