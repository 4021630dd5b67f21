// parallel/slurm.h — command steps as Slurm job steps, through srun.
//
//   parallel::ParallelOptions options;
//   options.max_parallel = 8;
//   parallel::SlurmOptions slurm;
//   slurm.srun_args = {"--mem=2G"};
//   options.launcher = parallel::SlurmLauncher(slurm);
//   absl::StatusOr<parallel::RunReport> report =
//       parallel::RunSteps(std::move(command_steps), options);
//
// Each command step runs as `srun --quiet --exclusive -N1 -n1
// --job-name=<run>.<index> --jobid=<job> [srun_args] argv...`: one task on
// one node with CPUs of its own. srun's stdout and stderr are the task's, so
// output is captured, grouped and replayed in order exactly as for local
// commands; srun adds its own lines to a failing step's stderr (e.g.
// `srun: error: node1: task 0: Exited with exit code 3`), as it does on a
// terminal.
//
// The allocation: inside one (SLURM_JOB_ID set, as under sbatch or salloc)
// the steps use it. Outside, Begin() asks for one sized to the run's
// parallelism (`salloc --no-shell -n <max_parallel>` plus salloc_args) and
// End() gives it back (scancel), so the steps of a run share one queue wait
// and nothing outlives the run. If the calling process is SIGKILLed the
// allocation stays until its time limit: pass salloc_args = {"--time=..."}
// to bound it.
//
// Exit codes and signals: srun exits with the task's exit code, or 128+N
// when the task was killed by signal N — then Interpret() reports the
// signal (StepReport::signal, exit_code -1, "was killed by signal 9
// (SIGKILL) on Slurm node n1") as for a local process. srun's own failures
// (it could not create the step: "srun: error: Unable to create step ...",
// "srun: fatal: ...") fail the step as parallel::ProcessStartError with
// srun's line.
//
// Timeouts, halt and interrupts kill srun's process group as they kill a
// local command's: SIGTERM makes srun cancel its job step, and SIGKILL after
// the grace period ends srun at once. End() then cancels every job step of
// the run still known to the cluster (by its name; `squeue --steps`), so
// nothing is left queued or running after any way out — except a step
// Slurm itself cannot end (an srun SIGKILLed between creating its step and
// starting the task; see SlurmOptions::message_fd).
//
// Thread-safety: one launcher per run (RunSteps calls it from one thread).

#ifndef PARALLEL_SLURM_H_
#define PARALLEL_SLURM_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "parallel/launcher.h"

namespace parallel {

struct SlurmOptions {
  // Passed to srun before the command (e.g. "--partition=debug",
  // "--mem=2G").
  std::vector<std::string> srun_args;
  // Outside an allocation: passed to salloc for the run's own allocation
  // (e.g. "--time=30", "--partition=debug").
  std::vector<std::string> salloc_args;
  // How long Begin() waits for that allocation (the cluster may be busy).
  absl::Duration allocation_timeout = absl::InfiniteDuration();
  // When the allocation cannot be granted at once (the cluster is busy, or
  // the request is more than the partition has up now — Slurm queues it
  // either way), one line saying so and why is written here before the
  // wait ("parallel: waiting for a Slurm allocation of 8 tasks (...)").
  // Also where End() says which of this run's job steps in the caller's
  // allocation Slurm did not end within cancel_wait (a step whose srun
  // was SIGKILLed while it started cannot be cancelled in Slurm 22.05; it
  // stays until the allocation ends). -1: nowhere. parallel_steps gives its
  // stderr.
  int message_fd = -1;
  // How long End() waits, after scancel, for the job steps (or the
  // allocation) it cancelled to be gone from squeue. Slurm signals a
  // cancelled step with SIGTERM and SIGKILLs it after the cluster's KillWait
  // (30 s by default).
  absl::Duration cancel_wait = absl::Seconds(40);
  // The Slurm client programs, searched in $PATH.
  std::string srun = "srun";
  std::string salloc = "salloc";
  std::string squeue = "squeue";
  std::string scancel = "scancel";
};

// A launcher for ParallelOptions::launcher. Begin() fails with
// kFailedPrecondition when srun cannot be found, and with kUnavailable
// (naming salloc's own message) when no allocation could be had.
std::shared_ptr<CommandLauncher> SlurmLauncher(SlurmOptions options = {});

}  // namespace parallel

#endif  // PARALLEL_SLURM_H_
