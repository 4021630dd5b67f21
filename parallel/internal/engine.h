// RunSteps' front end on the supervisor (supervisor.h): decides which step
// starts when (max_parallel, the throttle, halt_on_error, running out of fds
// or processes), starts it through launch.h with its output captured by the
// replayer, and judges how it ended. Waiting, deadlines, killing, reaping and
// replay are the supervisor's.
//
// Thread-safety: one Engine per run, used from one thread.

#ifndef PARALLEL_INTERNAL_ENGINE_H_
#define PARALLEL_INTERNAL_ENGINE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "parallel/options.h"
#include "parallel/run_hooks.h"
#include "parallel/step.h"

namespace parallel {
namespace internal {

// Validated options in, report out. See RunSteps in parallel/run_steps.h.
absl::StatusOr<RunReport> RunEngine(std::vector<Step> steps,
                                    const ParallelOptions& options,
                                    const RunHooks& hooks = {});

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_ENGINE_H_
