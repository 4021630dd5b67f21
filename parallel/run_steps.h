// parallel/run_steps.h — the exception-free core: named steps in, one report
// out.
//
// RunParallelSteps (parallel/run_parallel_steps.h) and the parallel_steps tool
// are built on RunSteps. Use it directly when you cannot catch exceptions, want
// per-step exit codes, durations and output sizes, or run commands:
//
//   std::vector<parallel::Step> steps;
//   steps.push_back(parallel::Step::Function([] { Build(); return ""; },
//   "build")); steps.push_back(parallel::Step::Shell("make -C docs", "docs"));
//   absl::StatusOr<parallel::RunReport> report =
//   parallel::RunSteps(std::move(steps)); if (!report.ok()) ...              //
//   bad options or temp dir; nothing ran for (const parallel::StepReport& step
//   : report->steps) ...
//
// Thread-safety: RunSteps may be called from several threads at once; each call
// owns its children. See parallel/run_parallel_steps.h for the fork contract,
// which applies to Step::Function bodies.

#ifndef PARALLEL_RUN_STEPS_H_
#define PARALLEL_RUN_STEPS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "parallel/options.h"
#include "parallel/run_hooks.h"
#include "parallel/step.h"

namespace parallel {

// Runs `steps` in child processes as `options` say, replays their output in
// step order, and reports on each. Returns a non-OK status only when nothing
// could run: invalid options (InvalidArgumentError naming the option) or an
// unusable temp dir (an error naming the directory). Failures of steps are in
// the report, never in the status.
absl::StatusOr<RunReport> RunSteps(std::vector<Step> steps,
                                   const ParallelOptions& options = {},
                                   const RunHooks& hooks = {});

}  // namespace parallel

#endif  // PARALLEL_RUN_STEPS_H_
