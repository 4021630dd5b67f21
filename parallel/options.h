// parallel/options.h — the knobs of RunParallelSteps and RunSteps.
//
//   parallel::ParallelOptions options;
//   options.max_parallel = 4;
//   options.timeout = absl::Minutes(5);
//   parallel::RunParallelSteps({StepA, StepB, StepC}, options);
//
// Invalid values (max_parallel < 0, a zero or negative timeout, a negative fd)
// are rejected before any step starts: the throwing API throws
// std::invalid_argument naming the option, RunSteps returns
// InvalidArgumentError.
//
// Thread-safety: a plain value.

#ifndef PARALLEL_OPTIONS_H_
#define PARALLEL_OPTIONS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace parallel {

class CommandLauncher;  // parallel/launcher.h

// The knobs every front end shares — RunParallelSteps/RunSteps
// (ParallelOptions), the task runners (PoolOptions,
// BackgroundTaskRunner::Options) — written once: per-unit time limits and
// where captured output is kept and replayed. A "unit" is a step or a task
// input.
struct ProcessOptions {
  // Per unit, wall clock from its start. Before a closure is killed for it,
  // the stack of its main thread is dumped into its output.
  absl::Duration timeout = absl::InfiniteDuration();
  // Per unit: no new output for this long counts as hung. There is no
  // default (chromite's is 145 minutes).
  absl::Duration silent_timeout = absl::InfiniteDuration();
  // Where replayed output goes (a file, a pipe, a terminal, /dev/null). Not
  // owned; if above 2 it is closed in the children, so that no step writes
  // past the ordering. Writes to it never block the run: a pipe or terminal
  // is written through a non-blocking description of the library's own.
  int output_fd = 1;
  // true: a unit's stderr joins its stdout in one stream, in the order
  // written (chromite). false: stderr is captured apart and replayed to
  // error_fd.
  bool combine_stderr = true;
  // Where replayed stderr goes when !combine_stderr. Not owned.
  int error_fd = 2;
  // Directory for spill files; "" = $TMPDIR, else /tmp.
  std::string temp_dir;
  // If set, a Chrome trace-event JSON file of the run (trace.h: one event
  // per unit on a lane per slot, running/queued counters) is written here
  // at its end — on every way out: success, failure, halt, interrupt —
  // atomically (a temp file renamed). Its directory must be writable when
  // the run starts (else kInvalidArgument); a write that fails at the end is
  // reported as the run's output_error (parallel::OutputLost).
  std::string trace_file;
};

struct ParallelOptions : ProcessOptions {
  // How many steps run at once; 0 = all at once. Enforced in the parent: a
  // step's process is only started when a slot is free.
  int max_parallel = 0;
  // The first failure in time kills the running steps (SIGTERM to their
  // process groups, SIGKILL after a grace period) and starts nothing new.
  // Killed and unstarted steps are reported as halted; their output and errors
  // are dropped, as chromite does.
  bool halt_on_error = false;
  // Value-returning steps: return their values in step order.
  bool return_values = false;
  // Where command steps (Step::Command, Step::Shell) run: null = on this
  // machine; parallel::SlurmLauncher() = as Slurm job steps through srun
  // (parallel/slurm.h). Function steps always run here.
  std::shared_ptr<CommandLauncher> launcher;
};

// OK, or InvalidArgumentError naming the first bad option.
absl::Status ValidateOptions(const ProcessOptions& options);
absl::Status ValidateOptions(const ParallelOptions& options);

}  // namespace parallel

#endif  // PARALLEL_OPTIONS_H_
