// parallel/launcher.h — where command steps run: on this machine (the
// default) or through a launcher such as Slurm's srun (parallel/slurm.h).
//
//   parallel::ParallelOptions options;
//   options.launcher = parallel::SlurmLauncher();
//   parallel::RunSteps(std::move(command_steps), options);
//
// A launcher rewrites each command step's argv (e.g. prefixes `srun ...`),
// may set up and tear down resources around the run (an allocation), and
// translates what its own process reported into what the command did. The
// rest — capture, ordered replay, timeouts, halt, interrupts, reports — is
// RunSteps' as for local commands: a timeout or an interrupt kills the
// launcher's process group, and the launcher's End() cleans up whatever that
// left behind. Function steps always run on this machine (a closure is a
// fork of the caller).
//
// Thread-safety: RunSteps calls a launcher from its calling thread only; a
// launcher shared between concurrent runs must be thread-safe itself.

#ifndef PARALLEL_LAUNCHER_H_
#define PARALLEL_LAUNCHER_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "parallel/step.h"

namespace parallel {

class CommandLauncher {
 public:
  virtual ~CommandLauncher() = default;
  // Once per run, before anything starts, with the run's parallelism
  // (max_parallel, or the number of command steps when that is 0). A
  // non-OK status ends the run before anything starts: RunSteps returns it
  // — unless Begin() also set *interrupt_signal (SIGINT, SIGTERM, SIGHUP or
  // SIGQUIT arrived while it waited, e.g. for an allocation): then RunSteps
  // returns a report with that interrupt_signal and every step
  // kInterrupted, as for an interrupt during the run.
  virtual absl::Status Begin(int parallelism, int* interrupt_signal) = 0;
  // The argv that runs command step `index`'s `argv` through the launcher.
  virtual std::vector<std::string> Wrap(
      size_t index, const std::vector<std::string>& argv) = 0;
  // For each command step that started, once the whole run has ended
  // (before End()): may rewrite its report (exit_code, signal, error) from
  // what the launcher's process reported (e.g. srun's exit status 128+N and
  // its "task 0: Killed" line). The returned RunReport has the rewritten
  // reports; RunHooks (on_end, should_halt) saw them before, as the
  // launcher's process ended — a step that srun says was SIGKILLed is exit
  // code 137 there. Both count it as a failure.
  virtual void Interpret(size_t index, StepReport* report) = 0;
  // Once per run, after Begin() succeeded, on every way out (success,
  // failure, halt, interrupt, an exception from a hook): releases what the
  // run holds (job steps still known to the cluster, the allocation).
  virtual void End() = 0;
};

}  // namespace parallel

#endif  // PARALLEL_LAUNCHER_H_
