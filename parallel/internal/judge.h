// How a child that ran a step or a task input ended, as a failure or not:
// the one mapping from (the library's kill reason, the process's exit, what
// the child reported) to an outcome, shared by every front end.
//
// Thread-safety: pure functions.

#ifndef PARALLEL_INTERNAL_JUDGE_H_
#define PARALLEL_INTERNAL_JUDGE_H_

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "parallel/failure.h"
#include "parallel/internal/child.h"
#include "parallel/internal/result.h"
#include "parallel/step.h"

namespace parallel {
namespace internal {

struct Verdict {
  StepOutcome outcome = StepOutcome::kSucceeded;
  std::optional<ExceptionInfo> error;  // type, message, traceback
  std::string value;                   // kSucceeded closures
};

struct JudgeInput {
  std::string who;  // "<name> (pid N)": synthetic messages start with it
  KillReason why = KillReason::kNone;
  ProcessExit exit = ProcessExit::Lost();
  // Null for commands: their exit code is their result.
  const ChildResult* result = nullptr;
  absl::Duration timeout;
  absl::Duration silent_timeout;
  // The signal that had stopped the child when a timeout killed it, or -1.
  int stop_signal = -1;
  // errno of a failed capture of the output (ENOSPC...), or 0.
  int capture_error = 0;
};

// A closure succeeds only if its success record arrived (so a status taken
// by another waiter cannot turn a failure into a pass); a command succeeds
// only on exit code 0 — a lost status fails it.
Verdict Judge(const JudgeInput& input);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_JUDGE_H_
