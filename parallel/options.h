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

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace parallel {

struct ParallelOptions {
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
  // Per step, wall clock. Before a step is killed for it, the stack of its
  // main thread is dumped into its output.
  absl::Duration timeout = absl::InfiniteDuration();
  // Per step: no new output for this long counts as hung.
  absl::Duration silent_timeout = absl::InfiniteDuration();
  // Where replayed output goes (a file, a pipe, /dev/null). Not owned; if
  // above 2 it is closed in the steps' children, so that no step writes past
  // the ordering. A non-blocking fd is waited on, never spun on.
  int output_fd = 1;
  // true: a step's stderr joins its stdout in one stream, in the order written
  // (chromite). false: stderr is captured apart and replayed to error_fd.
  bool combine_stderr = true;
  // Where replayed stderr goes when !combine_stderr. Not owned.
  int error_fd = 2;
  // Directory for capture files; "" = $TMPDIR, else /tmp.
  std::string temp_dir;
};

// OK, or InvalidArgumentError naming the first bad option.
absl::Status ValidateOptions(const ParallelOptions& options);

}  // namespace parallel

#endif  // PARALLEL_OPTIONS_H_
