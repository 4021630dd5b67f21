// parallel/step.h — steps (closures or commands) and the reports on them.
//
// A Step is what RunSteps (parallel/run_steps.h) runs in a child process: a
// closure (forked) or a command (spawned without copying the caller). A
// RunReport is what it returns: one StepReport per step, in step order.
//
//   std::vector<parallel::Step> steps;
//   steps.push_back(parallel::Step::Shell("make -C docs", "docs"));
//
// Thread-safety: plain values.

#ifndef PARALLEL_STEP_H_
#define PARALLEL_STEP_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/failure.h"

namespace parallel {

// One unit of work, run in its own child process.
class Step {
 public:
  // Runs `body` in a forked child. `body` returns the step's encoded value
  // (parallel::Encode; "" when there is none) or a non-OK status, which fails
  // the step with type "absl::Status". Exceptions thrown by `body` fail the
  // step with their demangled type. `name` defaults to "step N".
  static Step Function(std::function<absl::StatusOr<std::string>()> body,
                       std::string name = "");

  // Executes argv[0] (searched in $PATH) the way posix_spawn does, with
  // clone(CLONE_VM | CLONE_VFORK), plus PR_SET_PDEATHSIG; the caller's memory
  // is never forked. Exit code 0 is success. An empty argv makes RunSteps
  // return InvalidArgumentError; a program that cannot be executed fails
  // only its own step (parallel::ProcessStartError).
  static Step Command(std::vector<std::string> argv, std::string name = "");

  // A shell command line. Without shell metacharacters it is split on blanks
  // and executed directly, as GNU make does; otherwise it runs under
  // `/bin/sh -c`. `name` defaults to the command line.
  static Step Shell(const std::string& command_line, std::string name = "");

  const std::string& name() const { return name_; }
  bool is_command() const { return !argv_.empty(); }
  const std::vector<std::string>& argv() const { return argv_; }
  const std::function<absl::StatusOr<std::string>()>& body() const& {
    return body_;
  }
  // Moves the body out (`std::move(step).body()`), leaving it empty.
  std::function<absl::StatusOr<std::string>()> body() && {
    return std::move(body_);
  }

 private:
  std::string name_;
  std::function<absl::StatusOr<std::string>()> body_;
  std::vector<std::string> argv_;
};

enum class StepOutcome {
  kSucceeded,
  kFailed,       // `error` says why
  kHalted,       // killed or never started because halt_on_error fired
  kInterrupted,  // killed or never started because the caller got a signal
};

struct StepReport {
  std::string name;
  StepOutcome outcome = StepOutcome::kHalted;
  bool started = false;
  pid_t pid = 0;
  // The process's exit code, or -1 if it was killed by a signal or never ran.
  int exit_code = -1;
  // The signal that ended the process, or 0.
  int signal = 0;
  absl::Duration duration;
  // Bytes the step wrote to stdout and stderr together.
  uint64_t output_bytes = 0;
  // Set exactly when outcome == kFailed.
  std::optional<ExceptionInfo> error;
  // For failed steps: the last few KiB of their output (for summaries and CI
  // reports); empty otherwise. With combine_stderr, of the one stream, in
  // the order written; without, stdout's tail then stderr's (their relative
  // order is not known). Raw bytes; when cut, each part starts on a UTF-8
  // character boundary (never inside a multi-byte character).
  std::string output_tail;
  // The step's encoded return value, when options.return_values.
  std::string value;
  // For traces and timelines (trace.h): when it could have started (the
  // run's start; a pool input's Put or Submit), when it started, and the
  // slot it ran in (RunSteps: 0 <= slot < max_parallel; pools: the worker's
  // slot, one-shot processes after the pooled ones); InfinitePast and -1 if
  // it never started.
  absl::Time queued_time = absl::InfinitePast();
  absl::Time start_time = absl::InfinitePast();
  int slot = -1;
};

struct RunReport {
  std::vector<StepReport> steps;
  // Non-zero if SIGINT, SIGTERM, SIGHUP or SIGQUIT arrived during the run:
  // the steps were killed, output so far replayed, and the caller's signal
  // dispositions restored. The caller decides how to end (RunParallelSteps re-raises it).
  int interrupt_signal = 0;
  // Set when the replayed output could not be written (EPIPE: the reader is
  // gone, and then the steps were stopped; ENOSPC; EBADF...): type
  // parallel::OutputLost, the message names the stream and the errno.
  std::optional<ExceptionInfo> output_error;
  // The errno behind output_error (EPIPE, ENOSPC, ...), or 0.
  int output_errno = 0;
  // The run's start and end, and how many slots it had (max_parallel, the
  // pool's processes): for traces and timelines.
  absl::Time start_time = absl::InfinitePast();
  absl::Time end_time = absl::InfinitePast();
  int slots = 0;

  size_t failed_count() const;
  // The error of every failed step, in step order.
  std::vector<ExceptionInfo> failures() const;
};

}  // namespace parallel

#endif  // PARALLEL_STEP_H_
